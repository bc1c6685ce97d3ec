//! The webhook retention sweep on each backend, with real receivers on
//! loopback and the real delivery worker: final deliveries older than the
//! retention period go with their attempts, PENDING ones stay whatever
//! their age, recent ones stay, an event stays while a delivery points to
//! it and goes once none does; more rows than one batch all go, sweeps at
//! once share the work, the API then lists only what is kept and a pruned
//! delivery cannot be sent again (404), also when the redelivery races
//! the sweep; a failing sweep is retried.

use std::time::{Duration, Instant};

use agentkey::clock::rfc3339;
use agentkey::webhooks::retention::{Pruned, Sweeper, BATCH};
use agentkey::webhooks::worker::WebhookSettings;
use serde_json::json;

use crate::common::{str_of, TestApp, START};
use crate::webhooks::{
    create_webhook, deliveries, drain, rounds_until, settings, worker, Receiver,
};

const DAY: i64 = 86_400;

fn sweeper(app: &TestApp, batch: i64) -> Sweeper {
    Sweeper {
        store: app.store.clone(),
        clock: app.clock.clone(),
        metrics: app.state.metrics.clone(),
        retention: Duration::from_secs(30 * DAY as u64),
        batch,
    }
}

/// Runs one statement on the app's database behind the store's back.
async fn raw(app: &TestApp, statement: &str) {
    use sqlx::{Connection, Executor};
    if let Some(url) = app.database_url() {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        conn.execute(statement).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let path = app.db_path.as_ref().unwrap();
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        conn.execute(statement).await.unwrap();
        conn.close().await.unwrap();
    }
}

/// (events, deliveries, attempts) rows in the database.
async fn rows(app: &TestApp) -> (i64, i64, i64) {
    use sqlx::{Connection, Row};
    const COUNT: &str = "SELECT (SELECT COUNT(*) FROM webhook_events), \
        (SELECT COUNT(*) FROM webhook_deliveries), (SELECT COUNT(*) FROM webhook_attempts)";
    if let Some(url) = app.database_url() {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        let row = sqlx::query(COUNT).fetch_one(&mut conn).await.unwrap();
        (row.get(0), row.get(1), row.get(2))
    } else {
        let path = app.db_path.as_ref().unwrap();
        let url = format!("sqlite://{}", path.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let row = sqlx::query(COUNT).fetch_one(&mut conn).await.unwrap();
        (row.get(0), row.get(1), row.get(2))
    }
}

/// The metric line `agentkey_webhook_pruned_total{table="..."}`'s value.
async fn pruned_metric(app: &TestApp, table: &str) -> u64 {
    let text = app.state.render_metrics().await.unwrap();
    let name = format!("agentkey_webhook_pruned_total{{table=\"{table}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(name.as_str()))
        .unwrap_or_else(|| panic!("{name} is missing from\n{text}"))
        .parse()
        .unwrap()
}

/// Two endpoints, one receiver answering 200 and one answering 500 for
/// good. At START: token t1's deliveries are sent (`good` SUCCEEDED,
/// `flaky` left PENDING, its retry an hour away) and token t2's (both
/// final: SUCCEEDED and FAILED). 31 days later, token t3's (final, recent).
/// The sweep takes t2's deliveries and event and t1's SUCCEEDED delivery,
/// and keeps t1's PENDING delivery with its attempt and its event.
async fn old_final_deliveries_go_and_the_rest_stays(app: TestApp) {
    let t = app.tenant().await;
    let good = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.answer([500; 100]);
    let good_hook = create_webhook(&app, &t.org, json!({"url": good.url})).await;
    let good_hook = str_of(&good_hook, "id").to_string();
    let flaky_hook = create_webhook(&app, &t.org, json!({"url": flaky.url})).await;
    let flaky_hook = str_of(&flaky_hook, "id").to_string();
    let sent = |n: usize| {
        let (good, flaky) = (good.clone(), flaky.clone());
        move || good.requests() == n && flaky.requests() == n
    };

    // t1: a retry an hour away keeps flaky's delivery PENDING.
    let patient = worker(
        &app,
        WebhookSettings {
            retry_base: Duration::from_secs(3600),
            retry_max_interval: Duration::from_secs(3600),
            ..settings()
        },
    );
    app.agent_token(&t, json!({"name": "t1"})).await;
    rounds_until(&patient, "t1's deliveries", sent(1)).await;
    // t2 and later: no retries, so a failure is FAILED at once.
    let once = worker(
        &app,
        WebhookSettings {
            retry_for: Duration::ZERO,
            ..settings()
        },
    );
    app.agent_token(&t, json!({"name": "t2"})).await;
    rounds_until(&once, "t2's deliveries", sent(2)).await;
    let old_good = deliveries(&app, &t.org, &good_hook).await;
    let old_flaky = deliveries(&app, &t.org, &flaky_hook).await;
    let statuses = |list: &[serde_json::Value]| {
        list.iter()
            .map(|d| d["status"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&old_good), ["SUCCEEDED", "SUCCEEDED"]);
    assert_eq!(statuses(&old_flaky), ["FAILED", "PENDING"]);
    // The worker wrote updatedAt with the application's clock.
    assert_eq!(old_good[0]["updatedAt"], rfc3339(START));
    let kept_pending = old_flaky[1].clone();
    assert_eq!(kept_pending["attempts"].as_array().unwrap().len(), 1);

    app.clock.advance(31 * DAY);
    app.agent_token(&t, json!({"name": "t3"})).await;
    rounds_until(&once, "t3's deliveries", sent(3)).await;
    assert_eq!(rows(&app).await, (3, 6, 6));

    let pruned = sweeper(&app, BATCH).sweep().await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            attempts: 3,
            deliveries: 3,
            events: 1
        }
    );
    assert_eq!(rows(&app).await, (2, 3, 3));
    assert_eq!(pruned_metric(&app, "webhook_deliveries").await, 3);
    assert_eq!(pruned_metric(&app, "webhook_attempts").await, 3);
    assert_eq!(pruned_metric(&app, "webhook_events").await, 1);

    // What the API shows: t3's recent deliveries, and t1's PENDING one
    // with its attempt and its event.
    let now_good = deliveries(&app, &t.org, &good_hook).await;
    let now_flaky = deliveries(&app, &t.org, &flaky_hook).await;
    assert_eq!(statuses(&now_good), ["SUCCEEDED"]);
    assert_eq!(now_good[0]["updatedAt"], rfc3339(START + 31 * DAY));
    assert_eq!(statuses(&now_flaky), ["FAILED", "PENDING"]);
    assert_eq!(now_flaky[1], kept_pending);
    assert_eq!(now_flaky[1]["event"]["data"]["object"]["name"], "t1");
    assert_eq!(now_flaky[0]["event"]["data"]["object"]["name"], "t3");

    // A pruned delivery cannot be sent again: 404 in the envelope.
    for (hook, gone) in [(&good_hook, &old_good[0]), (&good_hook, &old_good[1])] {
        let reply = app
            .post(
                format!(
                    "/v1/organizations/{}/webhooks/{hook}/deliveries/{}/redeliver",
                    t.org,
                    str_of(gone, "id")
                ),
                json!({}),
            )
            .await;
        reply.assert_error(404);
    }

    // Nothing more to do: a second sweep deletes nothing.
    assert_eq!(
        sweeper(&app, BATCH).sweep().await.unwrap(),
        Pruned::default()
    );
    // A year on, the PENDING delivery and its event are still there; the
    // rest has gone.
    app.clock.advance(365 * DAY);
    let pruned = sweeper(&app, BATCH).sweep().await.unwrap();
    assert_eq!(
        pruned,
        Pruned {
            attempts: 2,
            deliveries: 2,
            events: 1
        }
    );
    assert_eq!(rows(&app).await, (1, 1, 1));
    assert!(deliveries(&app, &t.org, &good_hook).await.is_empty());
    assert_eq!(
        deliveries(&app, &t.org, &flaky_hook).await,
        vec![kept_pending]
    );
}

/// Seven old deliveries with a batch of three: every one goes (three
/// batches per table); then seven more, swept by two sweepers at once,
/// which between them delete each row once.
async fn more_rows_than_a_batch_all_go_and_sweeps_at_once_share(app: TestApp) {
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    let hook = create_webhook(&app, &t.org, json!({"url": receiver.url})).await;
    let hook = str_of(&hook, "id").to_string();
    let w = worker(&app, settings());
    for round in 0..2 {
        for i in 0..7 {
            app.agent_token(&t, json!({"name": format!("r{round}-{i}")}))
                .await;
        }
        drain(&app, &w).await;
        assert_eq!(rows(&app).await, (7, 7, 7));
        app.clock.advance(31 * DAY);
        let all = Pruned {
            attempts: 7,
            deliveries: 7,
            events: 7,
        };
        if round == 0 {
            assert_eq!(sweeper(&app, 3).sweep().await.unwrap(), all);
        } else {
            let (a, b) = (sweeper(&app, 3), sweeper(&app, 3));
            let (a, b) = tokio::join!(a.sweep(), b.sweep());
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(
                Pruned {
                    attempts: a.attempts + b.attempts,
                    deliveries: a.deliveries + b.deliveries,
                    events: a.events + b.events,
                },
                all
            );
        }
        assert_eq!(rows(&app).await, (0, 0, 0));
        assert!(deliveries(&app, &t.org, &hook).await.is_empty());
    }
    assert_eq!(pruned_metric(&app, "webhook_deliveries").await, 14);
}

/// The sweep as `serve` runs it: while a table it deletes from is missing
/// every round fails (and is logged), the task keeps going, and the first
/// round after the table is back deletes what is old.
async fn a_failing_sweep_is_retried_by_the_next_round(app: TestApp) {
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    create_webhook(&app, &t.org, json!({"url": receiver.url})).await;
    app.agent_token(&t, json!({"name": "old"})).await;
    drain(&app, &worker(&app, settings())).await;
    app.clock.advance(31 * DAY);
    raw(
        &app,
        "ALTER TABLE webhook_attempts RENAME TO webhook_attempts_away",
    )
    .await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task =
        tokio::spawn(sweeper(&app, BATCH).run(Duration::ZERO, Duration::from_millis(50), stopped));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!task.is_finished());
    assert_eq!(pruned_metric(&app, "webhook_deliveries").await, 0);
    raw(
        &app,
        "ALTER TABLE webhook_attempts_away RENAME TO webhook_attempts",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rows(&app).await != (0, 0, 0) {
        assert!(Instant::now() < deadline, "the next round did not prune");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(pruned_metric(&app, "webhook_deliveries").await, 1);
}

on_every_backend!(
    settings = crate::webhooks::app_settings();
    old_final_deliveries_go_and_the_rest_stays,
    more_rows_than_a_batch_all_go_and_sweeps_at_once_share,
    a_failing_sweep_is_retried_by_the_next_round,
);

/// PostgreSQL: a redelivery that reads its delivery just before a sweep
/// deletes it and its event answers 404, not an error: the event's foreign
/// key refuses the new delivery once the sweep commits. The sweep's
/// transaction is played by hand, so the redelivery's insert waits on it.
#[tokio::test]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn a_redelivery_racing_the_sweep_answers_404_postgres() {
    use sqlx::{Connection, Executor};
    let Some(app) = TestApp::postgres(crate::webhooks::app_settings()).await else {
        return;
    };
    let app = std::sync::Arc::new(app);
    let t = app.tenant().await;
    let receiver = Receiver::start().await;
    let hook = create_webhook(&app, &t.org, json!({"url": receiver.url})).await;
    let hook = str_of(&hook, "id").to_string();
    app.agent_token(&t, json!({"name": "raced"})).await;
    drain(&app, &worker(&app, settings())).await;
    let listed = deliveries(&app, &t.org, &hook).await;
    let (delivery, event) = (str_of(&listed[0], "id"), str_of(&listed[0], "eventId"));

    let mut sweep = sqlx::PgConnection::connect(app.database_url().unwrap())
        .await
        .unwrap();
    sweep.execute("BEGIN").await.unwrap();
    for statement in [
        format!("DELETE FROM webhook_attempts WHERE delivery_id = '{delivery}'"),
        format!("DELETE FROM webhook_deliveries WHERE id = '{delivery}'"),
        format!("DELETE FROM webhook_events WHERE id = '{event}'"),
    ] {
        sweep.execute(statement.as_str()).await.unwrap();
    }
    let path = format!(
        "/v1/organizations/{}/webhooks/{hook}/deliveries/{delivery}/redeliver",
        t.org
    );
    let racing = {
        let app = app.clone();
        tokio::spawn(async move { app.post(path, json!({})).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !racing.is_finished(),
        "the insert waits on the event's lock"
    );
    sweep.execute("COMMIT").await.unwrap();
    racing.await.unwrap().assert_error(404);
    assert_eq!(rows(&app).await, (0, 0, 0));
}
