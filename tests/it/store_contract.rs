//! The store contract: what every `Store` implementation must do, written
//! once and run on SQLite always and on PostgreSQL when
//! `AGENTKEY_TEST_DATABASE_URL` is set. Each test gets a fresh database of its
//! own (a temp file, or a `CREATE DATABASE` that is dropped afterwards), so
//! tests run in parallel and leave nothing behind.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use agentkey::model::{
    AgentCredential, AgentToken, AllowedIpRange, AuditEvent, Deployment, DeploymentType,
    NewAgentToken, Organization, RootCredential, Rotation, Subject, SubjectType, Workspace,
    AGENT_ROLE,
};
use agentkey::model::{ApiCredential, ApiToken, ApiTokenChange, ApiTokenEdit, NewApiToken};
use agentkey::roles::{EntityType, Role, RoleGrant};
use agentkey::store::{self, LockOutGuard, PageRequest, Sort, SortColumn, Store, StoreError};
use agentkey::store::{ApiTokenFilter, PlaceFilter, WorkspaceDeletion};
use agentkey::token::{new_id, Digest};

use crate::common::postgres::{fresh_postgres, with_database};

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Runs `body` with the URL of a fresh, empty SQLite database file.
async fn fresh_sqlite<F, Fut>(body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("create a temporary directory");
    body(format!(
        "sqlite://{}",
        dir.path().join("agentkey.db").display()
    ))
    .await;
}

/// Opens the store at `url` (through `store::open`, so the URL scheme picks
/// the backend), runs one contract case on it and closes it.
async fn with_store<C, Fut>(url: String, case: C)
where
    C: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = store::open(&url).await.expect("open the store");
    case(store.clone()).await;
    store.close().await;
}

/// One `#[tokio::test]` per (case, backend): `sqlite::NAME` and
/// `postgres::NAME`. `stores` cases take an `Arc<dyn Store>`, `urls` cases
/// the URL of an empty database (to open several stores on it).
macro_rules! contract {
    (stores: [$($case:ident),* $(,)?], urls: [$($url_case:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::fresh_sqlite(|url| super::with_store(url, super::$case)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $url_case() {
                    super::fresh_sqlite(super::$url_case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(not(postgres_tests), ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it")]
                async fn $case() {
                    super::fresh_postgres(|url| super::with_store(url, super::$case)).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                #[cfg_attr(not(postgres_tests), ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it")]
                async fn $url_case() {
                    super::fresh_postgres(super::$url_case).await;
                }
            )*
        }
    };
}

contract! {
    stores: [
        ping_answers,
        organizations_round_trip,
        workspaces_belong_to_their_organization,
        deployments_belong_to_their_organization,
        paging_counts_every_row,
        sorting_follows_byte_order,
        agent_tokens_round_trip,
        deleting_an_agent_token_answers_its_digest_once,
        rotation_keeps_the_replaced_secret_for_its_grace_window,
        deleting_a_deployment_deletes_its_tokens,
        token_limit_is_per_deployment,
        token_for_a_missing_deployment_is_refused,
        recording_use_never_lowers_last_used_at,
        root_credential_is_a_singleton,
        audit_events_commit_with_their_change,
        api_tokens_round_trip,
        api_token_lists_filter_by_role_and_page,
        api_token_changes_are_whole,
        deleting_an_api_token_deletes_its_roles,
        an_api_token_is_written_whole_or_not_at_all,
        registry_fields_round_trip,
        registry_updates_write_whole_with_their_event,
        a_workspace_is_deleted_only_when_empty,
        allowed_ranges_round_trip,
        allowed_ranges_are_added_all_or_none,
        allowed_ranges_are_deleted_in_bulk,
        allowlist_changes_keep_the_guarded_address,
        agent_token_networks_round_trip,
    ],
    urls: [
        concurrent_creates_through_two_pools_hold_the_limit,
        old_rows_take_their_makers_from_the_audit_trail,
        unknown_stored_names_are_refused_where_read,
        concurrent_range_creates_through_two_pools_hold_the_limit,
    ],
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_their_password() {
    match store::open("mysql://user:hunter2@db/agentkey").await {
        Err(StoreError::UnsupportedUrl(shown)) => {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("mysql://user:***@db"), "{shown}");
        }
        Err(other) => panic!("expected UnsupportedUrl, got {other}"),
        Ok(_) => panic!("a mysql:// URL was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn postgres_replicas_starting_together_all_migrate() {
    fresh_postgres(|url| async move {
        // Four replicas start at once against an empty database; the
        // migrator's advisory lock lets exactly one apply the schema.
        let opened = tokio::join!(
            store::open(&url),
            store::open(&url),
            store::open(&url),
            store::open(&url)
        );
        let stores = [opened.0, opened.1, opened.2, opened.3]
            .map(|s| s.unwrap_or_else(|e| panic!("a replica failed to start: {e}")));
        let org = org_named("after the race", 1);
        stores[0]
            .create_organization(&org, &crate::common::audit())
            .await
            .expect("create");
        for s in &stores {
            assert_eq!(
                s.get_organization(&org.id).await.expect("get"),
                Some(org.clone())
            );
            s.close().await;
        }
    })
    .await;
}

#[test]
fn test_database_urls_keep_host_and_options() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn org_named(name: &str, at: i64) -> Organization {
    Organization {
        id: new_id(),
        name: name.into(),
        created_at: at,
        updated_at: at,
        created_by: user("creator"),
        updated_by: user("creator"),
        has_allowed_ip_ranges: false,
    }
}

fn workspace_in(org: &Organization, name: &str, description: &str, at: i64) -> Workspace {
    Workspace {
        id: new_id(),
        organization_id: org.id.clone(),
        organization_name: org.name.clone(),
        name: name.into(),
        description: description.into(),
        cicd_enforced_default: false,
        created_at: at,
        updated_at: at,
        created_by: user("creator"),
        updated_by: user("creator"),
    }
}

fn deployment_in(ws: &Workspace, name: &str, description: &str, at: i64) -> Deployment {
    Deployment {
        id: new_id(),
        organization_id: ws.organization_id.clone(),
        workspace_id: ws.id.clone(),
        name: name.into(),
        description: description.into(),
        deployment_type: DeploymentType::Standard,
        is_cicd_enforced: false,
        created_at: at,
        updated_at: at,
        created_by: user("creator"),
        updated_by: user("creator"),
    }
}

fn service_key(id: &str, name: &str) -> Subject {
    Subject {
        id: id.into(),
        subject_type: SubjectType::ServiceKey,
        api_token_name: Some(name.into()),
    }
}

fn user(id: &str) -> Subject {
    Subject {
        id: id.into(),
        subject_type: SubjectType::User,
        api_token_name: None,
    }
}

/// A token as `create_agent_token` stores it (never used, never rotated).
fn token_in(dep: &Deployment, name: &str, at: i64) -> NewAgentToken {
    NewAgentToken {
        token: AgentToken {
            id: new_id(),
            organization_id: dep.organization_id.clone(),
            deployment_id: dep.id.clone(),
            name: name.into(),
            description: String::new(),
            short_token: "akagt_abcd".into(),
            role: AGENT_ROLE,
            expiry_period_in_days: None,
            start_at: at,
            end_at: None,
            created_at: at,
            updated_at: at,
            created_by: user("creator"),
            updated_by: user("creator"),
            last_used_at: None,
            last_rotated_at: None,
            previous_secret_valid_until: None,
            allowed_ip_ranges: Vec::new(),
        },
        secret_digest: Digest::of(&format!("akagt_secret_{}", new_id())),
    }
}

/// An organization with one workspace and one deployment.
async fn scaffold(store: &dyn Store) -> (Organization, Workspace, Deployment) {
    let org = org_named("acme", 1);
    let ws = workspace_in(&org, "data", "", 2);
    let dep = deployment_in(&ws, "prod", "", 3);
    store
        .create_organization(&org, &crate::common::audit())
        .await
        .expect("create org");
    store
        .create_workspace(&ws, &crate::common::audit())
        .await
        .expect("create workspace");
    store
        .create_deployment(&dep, &crate::common::audit())
        .await
        .expect("create deployment");
    (org, ws, dep)
}

fn window(offset: i64, limit: i64) -> PageRequest {
    PageRequest {
        offset,
        limit,
        sorts: vec![],
    }
}

fn all() -> PageRequest {
    window(0, 1000)
}

fn sorted_by(sorts: &[Sort]) -> PageRequest {
    PageRequest {
        offset: 0,
        limit: 1000,
        sorts: sorts.to_vec(),
    }
}

/// Text that sorts differently by bytes than by any linguistic collation.
const TRICKY: [&str; 8] = ["b", "B", "_x", "a b", "ab", "Äa", "a", "a"];

// ---------------------------------------------------------------------------
// Ordering: what `ORDER BY <sorts>, created_at, id` must give, by bytes
// ---------------------------------------------------------------------------

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key<'a> {
    Text(&'a str),
    Int(i64),
}

trait Listed {
    fn id(&self) -> &str;
    fn created_at(&self) -> i64;
    fn key(&self, column: SortColumn) -> Key<'_>;
}

fn ids<T: Listed>(items: &[T]) -> Vec<String> {
    items.iter().map(|i| i.id().to_string()).collect()
}

/// The ids of `items` in the order the store must list them; Rust compares
/// `str` by bytes, as SQLite does.
fn expected_order<T: Listed>(items: &[T], sorts: &[Sort]) -> Vec<String> {
    let mut refs: Vec<&T> = items.iter().collect();
    refs.sort_by(|a, b| {
        sorts
            .iter()
            .map(|s| {
                let order = a.key(s.column).cmp(&b.key(s.column));
                if s.descending {
                    order.reverse()
                } else {
                    order
                }
            })
            .fold(std::cmp::Ordering::Equal, std::cmp::Ordering::then)
            .then(a.created_at().cmp(&b.created_at()))
            .then(a.id().cmp(b.id()))
    });
    refs.into_iter().map(|i| i.id().to_string()).collect()
}

fn no_such_column(column: SortColumn) -> ! {
    panic!("this resource has no {column:?} column")
}

impl Listed for Organization {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn key(&self, column: SortColumn) -> Key<'_> {
        match column {
            SortColumn::Name => Key::Text(&self.name),
            SortColumn::CreatedAt => Key::Int(self.created_at),
            SortColumn::UpdatedAt => Key::Int(self.updated_at),
            other => no_such_column(other),
        }
    }
}

impl Listed for Workspace {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn key(&self, column: SortColumn) -> Key<'_> {
        match column {
            SortColumn::Name => Key::Text(&self.name),
            SortColumn::Description => Key::Text(&self.description),
            SortColumn::CreatedAt => Key::Int(self.created_at),
            SortColumn::UpdatedAt => Key::Int(self.updated_at),
            other => no_such_column(other),
        }
    }
}

impl Listed for Deployment {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn key(&self, column: SortColumn) -> Key<'_> {
        match column {
            SortColumn::Name => Key::Text(&self.name),
            SortColumn::Description => Key::Text(&self.description),
            SortColumn::CreatedAt => Key::Int(self.created_at),
            SortColumn::UpdatedAt => Key::Int(self.updated_at),
            other => no_such_column(other),
        }
    }
}

impl Listed for AgentToken {
    fn id(&self) -> &str {
        &self.id
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn key(&self, column: SortColumn) -> Key<'_> {
        match column {
            SortColumn::Name => Key::Text(&self.name),
            SortColumn::Description => Key::Text(&self.description),
            SortColumn::CreatedAt => Key::Int(self.created_at),
            SortColumn::UpdatedAt => Key::Int(self.updated_at),
            SortColumn::CreatedById => Key::Text(&self.created_by.id),
            SortColumn::UpdatedById => Key::Text(&self.updated_by.id),
            SortColumn::StartAt => Key::Int(self.start_at),
            SortColumn::IpAddressRange => no_such_column(column),
        }
    }
}

/// Every single-column sort over `columns`, ascending and descending.
fn single_sorts(columns: &[SortColumn]) -> Vec<Sort> {
    columns
        .iter()
        .flat_map(|&column| [false, true].map(|descending| Sort { column, descending }))
        .collect()
}

// ---------------------------------------------------------------------------
// The contract
// ---------------------------------------------------------------------------

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

async fn organizations_round_trip(store: Arc<dyn Store>) {
    let orgs = [
        org_named("one", 10),
        org_named("two", 20),
        org_named("three", 30),
    ];
    for org in &orgs {
        store
            .create_organization(org, &crate::common::audit())
            .await
            .expect("create");
    }
    for org in &orgs {
        assert_eq!(
            store.get_organization(&org.id).await.expect("get"),
            Some(org.clone())
        );
    }
    assert_eq!(store.get_organization(&new_id()).await.expect("get"), None);

    let page = store.list_organizations(&all()).await.expect("list");
    assert_eq!(page.total, 3);
    assert_eq!(page.items, orgs.to_vec());

    let again = Organization {
        name: "duplicate id".into(),
        ..orgs[0].clone()
    };
    assert!(
        store
            .create_organization(&again, &crate::common::audit())
            .await
            .is_err(),
        "duplicate id accepted"
    );
    assert_eq!(
        store.get_organization(&orgs[0].id).await.expect("get"),
        Some(orgs[0].clone())
    );
}

async fn workspaces_belong_to_their_organization(store: Arc<dyn Store>) {
    let (a, b) = (org_named("a", 1), org_named("b", 2));
    store
        .create_organization(&a, &crate::common::audit())
        .await
        .expect("create org");
    store
        .create_organization(&b, &crate::common::audit())
        .await
        .expect("create org");
    let a1 = workspace_in(&a, "a1", "first", 10);
    let a2 = workspace_in(&a, "a2", "", 20);
    let b1 = workspace_in(&b, "b1", "", 30);
    for ws in [&a1, &a2, &b1] {
        store
            .create_workspace(ws, &crate::common::audit())
            .await
            .expect("create workspace");
    }

    let page = store
        .list_workspaces(&a.id, &store::PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (2, vec![a1.clone(), a2.clone()]));
    let page = store
        .list_workspaces(&b.id, &store::PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (1, vec![b1.clone()]));
    let page = store
        .list_workspaces(&new_id(), &store::PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (0, vec![]));

    assert_eq!(
        store.get_workspace(&a.id, &a1.id).await.expect("get"),
        Some(a1.clone())
    );
    assert_eq!(store.get_workspace(&b.id, &a1.id).await.expect("get"), None);
    assert_eq!(
        store.get_workspace(&a.id, &new_id()).await.expect("get"),
        None
    );
}

async fn deployments_belong_to_their_organization(store: Arc<dyn Store>) {
    let (a, b) = (org_named("a", 1), org_named("b", 2));
    store
        .create_organization(&a, &crate::common::audit())
        .await
        .expect("create org");
    store
        .create_organization(&b, &crate::common::audit())
        .await
        .expect("create org");
    let (wa, wb) = (workspace_in(&a, "wa", "", 3), workspace_in(&b, "wb", "", 4));
    store
        .create_workspace(&wa, &crate::common::audit())
        .await
        .expect("create workspace");
    store
        .create_workspace(&wb, &crate::common::audit())
        .await
        .expect("create workspace");
    let a1 = deployment_in(&wa, "a1", "first", 10);
    let a2 = deployment_in(&wa, "a2", "", 20);
    let b1 = deployment_in(&wb, "b1", "", 30);
    for dep in [&a1, &a2, &b1] {
        store
            .create_deployment(dep, &crate::common::audit())
            .await
            .expect("create deployment");
    }

    let page = store
        .list_deployments(&a.id, &store::PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (2, vec![a1.clone(), a2.clone()]));
    let page = store
        .list_deployments(&b.id, &store::PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (1, vec![b1.clone()]));
    let page = store
        .list_deployments(&new_id(), &store::PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (0, vec![]));

    assert_eq!(
        store.get_deployment(&a.id, &a1.id).await.expect("get"),
        Some(a1.clone())
    );
    assert_eq!(
        store.get_deployment(&b.id, &a1.id).await.expect("get"),
        None
    );
    assert_eq!(
        store.get_deployment(&a.id, &new_id()).await.expect("get"),
        None
    );
}

/// Pages of two over five rows, for lists filtered by zero, one and two
/// values: every page reports the total, the pages tile the list in order,
/// and a page past the end is empty.
async fn paging_counts_every_row(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let mut orgs = vec![org.clone()];
    let mut workspaces = vec![ws.clone()];
    let mut tokens = vec![];
    for at in 10..14 {
        let o = org_named("o", at);
        store
            .create_organization(&o, &crate::common::audit())
            .await
            .expect("create org");
        orgs.push(o);
        let w = workspace_in(&org, "w", "", at);
        store
            .create_workspace(&w, &crate::common::audit())
            .await
            .expect("create workspace");
        workspaces.push(w);
    }
    for at in 10..15 {
        let t = token_in(&dep, "t", at);
        store
            .create_agent_token(&t, 50, &crate::common::audit())
            .await
            .expect("create token");
        tokens.push(t.token);
    }
    let (orgs, workspaces, tokens) = (ids(&orgs), ids(&workspaces), ids(&tokens));
    assert_eq!((orgs.len(), workspaces.len(), tokens.len()), (5, 5, 5));

    for (offset, range) in [(0, 0..2), (2, 2..4), (4, 4..5), (6, 5..5)] {
        let page = store
            .list_organizations(&window(offset, 2))
            .await
            .expect("list");
        assert_eq!(
            (page.total, ids(&page.items)),
            (5, orgs[range.clone()].to_vec())
        );
        let page = store
            .list_workspaces(&org.id, &store::PlaceFilter::default(), &window(offset, 2))
            .await
            .expect("list");
        assert_eq!(
            (page.total, ids(&page.items)),
            (5, workspaces[range.clone()].to_vec())
        );
        let page = store
            .list_agent_tokens(&org.id, &dep.id, &window(offset, 2))
            .await
            .expect("list");
        assert_eq!((page.total, ids(&page.items)), (5, tokens[range].to_vec()));
    }
}

/// Every sort column, ascending and descending, on every list: text by
/// bytes, ties broken by `created_at` then `id`.
async fn sorting_follows_byte_order(store: Arc<dyn Store>) {
    let org = org_named("sorting", 0);
    store
        .create_organization(&org, &crate::common::audit())
        .await
        .expect("create org");
    let ws0 = workspace_in(&org, "w", "", 0);
    store
        .create_workspace(&ws0, &crate::common::audit())
        .await
        .expect("create workspace");
    let dep0 = deployment_in(&ws0, "d", "", 0);
    store
        .create_deployment(&dep0, &crate::common::audit())
        .await
        .expect("create deployment");

    let mut orgs = vec![org.clone()];
    let mut workspaces = vec![ws0.clone()];
    let mut deployments = vec![dep0.clone()];
    let mut tokens = vec![];
    for (i, name) in TRICKY.iter().enumerate() {
        let i = i as i64;
        // Repeating patterns of different lengths, so that every column has
        // ties that the next term must break.
        let description = TRICKY[(i as usize * 3) % TRICKY.len()];
        let (created, updated) = (100 + i % 3, 200 + i % 4);
        let o = Organization {
            updated_at: updated,
            ..org_named(name, created)
        };
        let w = Workspace {
            updated_at: updated,
            ..workspace_in(&org, name, description, created)
        };
        let d = Deployment {
            updated_at: updated,
            ..deployment_in(&ws0, name, description, created)
        };
        let mut t = token_in(&dep0, name, created);
        t.token.description = description.into();
        t.token.updated_at = updated;
        t.token.start_at = 300 + i % 2;
        t.token.created_by = user(TRICKY[(i as usize + 5) % TRICKY.len()]);
        t.token.updated_by = user(TRICKY[(i as usize * 5) % TRICKY.len()]);
        store
            .create_organization(&o, &crate::common::audit())
            .await
            .expect("create org");
        store
            .create_workspace(&w, &crate::common::audit())
            .await
            .expect("create workspace");
        store
            .create_deployment(&d, &crate::common::audit())
            .await
            .expect("create deployment");
        store
            .create_agent_token(&t, 50, &crate::common::audit())
            .await
            .expect("create token");
        orgs.push(o);
        workspaces.push(w);
        deployments.push(d);
        tokens.push(t.token);
    }

    use SortColumn::*;
    for sort in single_sorts(&[Name, CreatedAt, UpdatedAt]) {
        let page = store
            .list_organizations(&sorted_by(&[sort]))
            .await
            .expect("list");
        assert_eq!(
            ids(&page.items),
            expected_order(&orgs, &[sort]),
            "organizations by {sort:?}"
        );
    }
    for sort in single_sorts(&[Name, Description, CreatedAt, UpdatedAt]) {
        let page = store
            .list_workspaces(&org.id, &store::PlaceFilter::default(), &sorted_by(&[sort]))
            .await
            .expect("list");
        assert_eq!(
            ids(&page.items),
            expected_order(&workspaces, &[sort]),
            "workspaces by {sort:?}"
        );
        let page = store
            .list_deployments(&org.id, &store::PlaceFilter::default(), &sorted_by(&[sort]))
            .await
            .expect("list");
        assert_eq!(
            ids(&page.items),
            expected_order(&deployments, &[sort]),
            "deployments by {sort:?}"
        );
    }
    let every = [
        Name,
        Description,
        CreatedAt,
        UpdatedAt,
        CreatedById,
        UpdatedById,
        StartAt,
    ];
    for sort in single_sorts(&every) {
        let page = store
            .list_agent_tokens(&org.id, &dep0.id, &sorted_by(&[sort]))
            .await
            .expect("list");
        assert_eq!(
            ids(&page.items),
            expected_order(&tokens, &[sort]),
            "tokens by {sort:?}"
        );
    }
    let two = [
        Sort {
            column: StartAt,
            descending: true,
        },
        Sort {
            column: Description,
            descending: false,
        },
    ];
    let page = store
        .list_agent_tokens(&org.id, &dep0.id, &sorted_by(&two))
        .await
        .expect("list");
    assert_eq!(
        ids(&page.items),
        expected_order(&tokens, &two),
        "tokens by {two:?}"
    );
}

async fn agent_tokens_round_trip(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let other_dep = deployment_in(&ws, "staging", "", 4);
    store
        .create_deployment(&other_dep, &crate::common::audit())
        .await
        .expect("create deployment");

    let mut full = token_in(&dep, "full", 10);
    full.token.description = "every optional field set".into();
    full.token.expiry_period_in_days = Some(30);
    full.token.end_at = Some(10 + 30 * 86_400);
    full.token.created_by = Subject {
        id: new_id(),
        subject_type: SubjectType::ServiceKey,
        api_token_name: Some("ci".into()),
    };
    full.token.updated_by = user("someone");
    let bare = token_in(&dep, "bare", 20);
    store
        .create_agent_token(&full, 50, &crate::common::audit())
        .await
        .expect("create");
    store
        .create_agent_token(&bare, 50, &crate::common::audit())
        .await
        .expect("create");

    for t in [&full, &bare] {
        let got = store
            .get_agent_token(&org.id, &dep.id, &t.token.id)
            .await
            .expect("get");
        assert_eq!(got, Some(t.token.clone()));
    }
    let page = store
        .list_agent_tokens(&org.id, &dep.id, &all())
        .await
        .expect("list");
    assert_eq!(
        (page.total, page.items),
        (2, vec![full.token.clone(), bare.token.clone()])
    );
    let page = store
        .list_agent_tokens(&org.id, &other_dep.id, &all())
        .await
        .expect("list");
    assert_eq!(page.total, 0);

    let id = &full.token.id;
    assert_eq!(
        store
            .get_agent_token(&new_id(), &dep.id, id)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store
            .get_agent_token(&org.id, &other_dep.id, id)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store
            .get_agent_token(&org.id, &dep.id, &new_id())
            .await
            .expect("get"),
        None
    );

    let credential = store
        .find_agent_credential(&full.secret_digest)
        .await
        .expect("find");
    assert_eq!(
        credential,
        Some(AgentCredential {
            token_id: full.token.id.clone(),
            organization_id: org.id.clone(),
            deployment_id: dep.id.clone(),
            name: "full".into(),
            end_at: full.token.end_at,
            grace_until: None,
            issued_at: full.token.start_at,
            secret_digest: full.secret_digest,
            allowed_networks: Vec::new(),
        })
    );
    let unknown = Digest::of("akagt_never_issued");
    assert_eq!(
        store.find_agent_credential(&unknown).await.expect("find"),
        None
    );
}

async fn deleting_an_agent_token_answers_its_digest_once(store: Arc<dyn Store>) {
    let (org, _, dep) = scaffold(store.as_ref()).await;
    let (gone, kept) = (token_in(&dep, "gone", 10), token_in(&dep, "kept", 20));
    store
        .create_agent_token(&gone, 50, &crate::common::audit())
        .await
        .expect("create");
    store
        .create_agent_token(&kept, 50, &crate::common::audit())
        .await
        .expect("create");
    let id = &gone.token.id;

    assert_eq!(
        store
            .delete_agent_token(&new_id(), &dep.id, id, &crate::common::audit())
            .await
            .expect("delete"),
        None
    );
    assert_eq!(
        store
            .delete_agent_token(&org.id, &new_id(), id, &crate::common::audit())
            .await
            .expect("delete"),
        None
    );
    assert!(store
        .get_agent_token(&org.id, &dep.id, id)
        .await
        .expect("get")
        .is_some());

    let deleted = store
        .delete_agent_token(&org.id, &dep.id, id, &crate::common::audit())
        .await
        .expect("delete");
    assert_eq!(deleted, Some(gone.secret_digest));
    assert_eq!(
        store
            .delete_agent_token(&org.id, &dep.id, id, &crate::common::audit())
            .await
            .expect("delete"),
        None
    );
    assert_eq!(
        store
            .get_agent_token(&org.id, &dep.id, id)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store
            .find_agent_credential(&gone.secret_digest)
            .await
            .expect("find"),
        None
    );

    let page = store
        .list_agent_tokens(&org.id, &dep.id, &all())
        .await
        .expect("list");
    assert_eq!((page.total, page.items), (1, vec![kept.token.clone()]));
    assert!(store
        .find_agent_credential(&kept.secret_digest)
        .await
        .expect("find")
        .is_some());
}

async fn rotation_keeps_the_replaced_secret_for_its_grace_window(store: Arc<dyn Store>) {
    let (org, _, dep) = scaffold(store.as_ref()).await;
    let original = token_in(&dep, "rotated", 10);
    store
        .create_agent_token(&original, 50, &crate::common::audit())
        .await
        .expect("create");
    let actor = Subject {
        id: new_id(),
        subject_type: SubjectType::ServiceKey,
        api_token_name: Some("ci".into()),
    };
    let rotation = |secret: &str, previous_valid_until: Option<i64>, at: i64| Rotation {
        organization_id: org.id.clone(),
        deployment_id: dep.id.clone(),
        token_id: original.token.id.clone(),
        secret_digest: Digest::of(secret),
        short_token: format!("akagt_{}", &secret[..4]),
        previous_valid_until,
        at,
        actor: actor.clone(),
    };
    let find = |digest: Digest| {
        let store = store.clone();
        async move { store.find_agent_credential(&digest).await.expect("find") }
    };

    // Someone else's token, or none at all: nothing to rotate.
    let elsewhere = Rotation {
        organization_id: new_id(),
        ..rotation("zzzz-elsewhere", Some(1000), 500)
    };
    assert_eq!(
        store
            .rotate_agent_token(&elsewhere, &crate::common::audit())
            .await
            .expect("rotate"),
        None
    );
    let missing = Rotation {
        token_id: new_id(),
        ..rotation("zzzz-missing", Some(1000), 500)
    };
    assert_eq!(
        store
            .rotate_agent_token(&missing, &crate::common::audit())
            .await
            .expect("rotate"),
        None
    );
    assert_eq!(find(Digest::of("zzzz-elsewhere")).await, None);

    // First rotation, with a grace window for the original secret.
    let first = rotation("aaaa-first", Some(1000), 500);
    let rotated = store
        .rotate_agent_token(&first, &crate::common::audit())
        .await
        .expect("rotate");
    let want = AgentToken {
        short_token: "akagt_aaaa".into(),
        last_rotated_at: Some(500),
        previous_secret_valid_until: Some(1000),
        updated_at: 500,
        updated_by: actor.clone(),
        ..original.token.clone()
    };
    assert_eq!(rotated, Some(want.clone()));
    let stored = store
        .get_agent_token(&org.id, &dep.id, &original.token.id)
        .await
        .expect("get");
    assert_eq!(stored, Some(want));
    let current = find(first.secret_digest)
        .await
        .expect("the new secret verifies");
    assert_eq!(
        (
            current.grace_until,
            current.issued_at,
            current.secret_digest
        ),
        (None, 500, first.secret_digest)
    );
    let old = find(original.secret_digest)
        .await
        .expect("the old secret is in its grace window");
    assert_eq!(
        (old.grace_until, old.issued_at, old.secret_digest),
        (Some(1000), original.token.start_at, original.secret_digest)
    );
    assert_eq!(old.token_id, original.token.id);

    // A second rotation retires the original at once and gives the first
    // secret a window of its own.
    let second = rotation("bbbb-second", Some(2000), 600);
    assert!(store
        .rotate_agent_token(&second, &crate::common::audit())
        .await
        .expect("rotate")
        .is_some());
    assert_eq!(find(original.secret_digest).await, None);
    let graced = find(first.secret_digest)
        .await
        .expect("in its grace window");
    assert_eq!(graced.grace_until, Some(2000));
    assert_eq!(graced.issued_at, 500, "issued by the first rotation");
    assert_eq!(
        find(second.secret_digest)
            .await
            .expect("current")
            .grace_until,
        None
    );

    // Without a window, the replaced secret stops at once.
    let third = rotation("cccc-third", None, 700);
    assert!(store
        .rotate_agent_token(&third, &crate::common::audit())
        .await
        .expect("rotate")
        .is_some());
    assert_eq!(find(first.secret_digest).await, None);
    assert_eq!(find(second.secret_digest).await, None);
    assert!(find(third.secret_digest).await.is_some());

    // Deleting answers the current digest; nothing of the token verifies.
    let deleted = store
        .delete_agent_token(
            &org.id,
            &dep.id,
            &original.token.id,
            &crate::common::audit(),
        )
        .await
        .expect("delete");
    assert_eq!(deleted, Some(third.secret_digest));
    assert_eq!(find(third.secret_digest).await, None);
}

async fn deleting_a_deployment_deletes_its_tokens(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let other = deployment_in(&ws, "other", "", 4);
    let empty = deployment_in(&ws, "empty", "", 5);
    store
        .create_deployment(&other, &crate::common::audit())
        .await
        .expect("create deployment");
    store
        .create_deployment(&empty, &crate::common::audit())
        .await
        .expect("create deployment");
    let doomed: Vec<NewAgentToken> = (0..3).map(|i| token_in(&dep, "t", 10 + i)).collect();
    let survivor = token_in(&other, "s", 10);
    for t in doomed.iter().chain([&survivor]) {
        store
            .create_agent_token(t, 50, &crate::common::audit())
            .await
            .expect("create token");
    }

    assert_eq!(
        store
            .delete_deployment(&new_id(), &dep.id, &crate::common::audit())
            .await
            .expect("delete"),
        None
    );
    assert!(store
        .get_deployment(&org.id, &dep.id)
        .await
        .expect("get")
        .is_some());

    let digests = store
        .delete_deployment(&org.id, &dep.id, &crate::common::audit())
        .await
        .expect("delete");
    let digests: BTreeSet<String> = digests
        .expect("deployment existed")
        .iter()
        .map(Digest::to_hex)
        .collect();
    let want: BTreeSet<String> = doomed.iter().map(|t| t.secret_digest.to_hex()).collect();
    assert_eq!(digests, want);
    assert_eq!(
        store
            .delete_deployment(&org.id, &dep.id, &crate::common::audit())
            .await
            .expect("delete"),
        None
    );

    assert_eq!(
        store.get_deployment(&org.id, &dep.id).await.expect("get"),
        None
    );
    for t in &doomed {
        assert_eq!(
            store
                .find_agent_credential(&t.secret_digest)
                .await
                .expect("find"),
            None
        );
        let got = store
            .get_agent_token(&org.id, &dep.id, &t.token.id)
            .await
            .expect("get");
        assert_eq!(got, None);
    }
    let page = store
        .list_agent_tokens(&org.id, &dep.id, &all())
        .await
        .expect("list");
    assert_eq!(page.total, 0);

    let page = store
        .list_agent_tokens(&org.id, &other.id, &all())
        .await
        .expect("list");
    assert_eq!(page.items, vec![survivor.token.clone()]);
    assert!(store
        .find_agent_credential(&survivor.secret_digest)
        .await
        .expect("find")
        .is_some());

    let none = store
        .delete_deployment(&org.id, &empty.id, &crate::common::audit())
        .await
        .expect("delete");
    assert_eq!(none, Some(vec![]));
    assert_eq!(
        store
            .delete_deployment(&org.id, &new_id(), &crate::common::audit())
            .await
            .expect("delete"),
        None
    );
}

async fn token_limit_is_per_deployment(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let other = deployment_in(&ws, "other", "", 4);
    store
        .create_deployment(&other, &crate::common::audit())
        .await
        .expect("create deployment");
    let mut created = vec![];
    for i in 0..3 {
        let t = token_in(&dep, "t", 10 + i);
        store
            .create_agent_token(&t, 3, &crate::common::audit())
            .await
            .expect("within the limit");
        created.push(t);
    }
    let refused = token_in(&dep, "one too many", 20);
    match store
        .create_agent_token(&refused, 3, &crate::common::audit())
        .await
    {
        Err(StoreError::AgentTokenLimit { limit: 3 }) => {}
        other => panic!("expected AgentTokenLimit {{ limit: 3 }}, got {other:?}"),
    }
    assert_eq!(
        store
            .find_agent_credential(&refused.secret_digest)
            .await
            .expect("find"),
        None
    );
    let page = store
        .list_agent_tokens(&org.id, &dep.id, &all())
        .await
        .expect("list");
    assert_eq!(page.total, 3);

    // Another deployment has room of its own.
    store
        .create_agent_token(&token_in(&other, "t", 10), 3, &crate::common::audit())
        .await
        .expect("other deployment");
    // Deleting one makes room again.
    let first = &created[0].token;
    store
        .delete_agent_token(&org.id, &dep.id, &first.id, &crate::common::audit())
        .await
        .expect("delete");
    store
        .create_agent_token(&refused, 3, &crate::common::audit())
        .await
        .expect("room after a delete");
}

async fn token_for_a_missing_deployment_is_refused(store: Arc<dyn Store>) {
    let (org, ws, _) = scaffold(store.as_ref()).await;
    let ghost = deployment_in(&ws, "never created", "", 4);
    let t = token_in(&ghost, "orphan", 10);
    match store
        .create_agent_token(&t, 50, &crate::common::audit())
        .await
    {
        Err(StoreError::DeploymentNotFound) => {}
        other => panic!("expected DeploymentNotFound, got {other:?}"),
    }
    // A real deployment, but named under another organization.
    let (_, _, real) = scaffold(store.as_ref()).await;
    let mut foreign = token_in(&real, "foreign", 11);
    foreign.token.organization_id = org.id.clone();
    match store
        .create_agent_token(&foreign, 50, &crate::common::audit())
        .await
    {
        Err(StoreError::DeploymentNotFound) => {}
        other => panic!("expected DeploymentNotFound, got {other:?}"),
    }
    assert_eq!(
        store
            .find_agent_credential(&t.secret_digest)
            .await
            .expect("find"),
        None
    );
    let got = store
        .get_agent_token(&org.id, &ghost.id, &t.token.id)
        .await
        .expect("get");
    assert_eq!(got, None);
}

async fn recording_use_never_lowers_last_used_at(store: Arc<dyn Store>) {
    let (org, _, dep) = scaffold(store.as_ref()).await;
    let (a, b) = (token_in(&dep, "a", 10), token_in(&dep, "b", 10));
    store
        .create_agent_token(&a, 50, &crate::common::audit())
        .await
        .expect("create");
    store
        .create_agent_token(&b, 50, &crate::common::audit())
        .await
        .expect("create");
    let (a_id, b_id) = (a.token.id.clone(), b.token.id.clone());
    let last_used = |id: String| {
        let (store, org, dep) = (store.clone(), org.id.clone(), dep.id.clone());
        async move {
            let token = store.get_agent_token(&org, &dep, &id).await.expect("get");
            token.expect("token exists").last_used_at
        }
    };

    assert_eq!(last_used(a_id.clone()).await, None);
    store
        .record_agent_token_use(&[])
        .await
        .expect("empty batch");

    store
        .record_agent_token_use(&[(a_id.clone(), 100)])
        .await
        .expect("record");
    assert_eq!(last_used(a_id.clone()).await, Some(100));
    assert_eq!(last_used(b_id.clone()).await, None, "another token changed");

    store
        .record_agent_token_use(&[(a_id.clone(), 50)])
        .await
        .expect("record");
    assert_eq!(
        last_used(a_id.clone()).await,
        Some(100),
        "an older use lowered it"
    );

    // One batch: the same token twice (either order), another token, and a
    // token that no longer exists.
    let batch = [
        (a_id.clone(), 300),
        (b_id.clone(), 7),
        (new_id(), 400),
        (a_id.clone(), 250),
    ];
    store.record_agent_token_use(&batch).await.expect("record");
    assert_eq!(last_used(a_id.clone()).await, Some(300));
    assert_eq!(last_used(b_id.clone()).await, Some(7));
}

async fn root_credential_is_a_singleton(store: Arc<dyn Store>) {
    let root = |name: &str, at: i64| RootCredential {
        id: new_id(),
        secret_digest: Digest::of(name),
        created_at: at,
    };
    assert_eq!(store.root_credential().await.expect("read"), None);

    let first = root("akroot_first", 1);
    assert!(store
        .insert_root_credential_if_absent(&first, &crate::common::audit())
        .await
        .expect("insert"));
    assert_eq!(
        store.root_credential().await.expect("read"),
        Some(first.clone())
    );

    let second = root("akroot_second", 2);
    assert!(!store
        .insert_root_credential_if_absent(&second, &crate::common::audit())
        .await
        .expect("insert"));
    assert_eq!(
        store.root_credential().await.expect("read"),
        Some(first.clone())
    );

    store
        .replace_root_credential(&second, &crate::common::audit())
        .await
        .expect("replace");
    assert_eq!(
        store.root_credential().await.expect("read"),
        Some(second.clone())
    );
    let third = root("akroot_third", 3);
    store
        .replace_root_credential(&third, &crate::common::audit())
        .await
        .expect("replace");
    assert_eq!(store.root_credential().await.expect("read"), Some(third));
}

/// Twenty creates at once, alternating between two stores (two pools, as
/// two replicas would have), against a limit of five: exactly five land.
async fn concurrent_creates_through_two_pools_hold_the_limit(url: String) {
    let a = store::open(&url).await.expect("open the first store");
    let b = store::open(&url).await.expect("open the second store");
    let (org, _, dep) = scaffold(a.as_ref()).await;

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let new = token_in(&dep, &format!("t{i}"), 10 + i);
        tasks.spawn(async move {
            store
                .create_agent_token(&new, 5, &crate::common::audit())
                .await
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("the task panicked") {
            Ok(()) => created += 1,
            Err(StoreError::AgentTokenLimit { limit: 5 }) => refused += 1,
            Err(other) => panic!("a create failed for another reason: {other}"),
        }
    }
    assert_eq!((created, refused), (5, 15));
    for store in [&a, &b] {
        let page = store
            .list_agent_tokens(&org.id, &dep.id, &all())
            .await
            .expect("list");
        assert_eq!(page.total, 5);
    }
    a.close().await;
    b.close().await;
}

/// Runs one statement on the database at `url` behind the store's back, as
/// an older or newer agentkey, or a hand edit, could have left it.
async fn execute_raw(url: &str, statement: &str) {
    use sqlx::{Connection, Executor};
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        conn.execute(statement).await.expect("run the statement");
        conn.close().await.expect("close");
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        conn.execute(statement).await.expect("run the statement");
        conn.close().await.expect("close");
    }
}

/// A stored name agentkey does not know (a subject type, an agent token's
/// role) is an error that names the column and the value when the record is
/// read, one by one or in a list; it is never taken for another name.
async fn unknown_stored_names_are_refused_where_read(url: String) {
    let store = store::open(&url).await.expect("open the store");
    let (org, _, dep) = scaffold(store.as_ref()).await;
    let t = token_in(&dep, "t", 10);
    store
        .create_agent_token(&t, 5, &crate::common::audit())
        .await
        .expect("create");
    let cases = [
        (
            "created_by_type",
            "ROBOT",
            r#"unknown subject type "ROBOT""#,
        ),
        (
            "role",
            "DEPLOYMENT_ADMIN",
            r#"unknown agent token role "DEPLOYMENT_ADMIN""#,
        ),
    ];
    for (column, value, said) in cases {
        let good: String = match column {
            "role" => AGENT_ROLE.as_str().into(),
            _ => SubjectType::User.as_str().into(),
        };
        execute_raw(
            &url,
            &format!("UPDATE agent_tokens SET {column} = '{value}'"),
        )
        .await;
        let one = store
            .get_agent_token(&org.id, &dep.id, &t.token.id)
            .await
            .expect_err("a name agentkey does not know is refused");
        let listed = store
            .list_agent_tokens(&org.id, &dep.id, &all())
            .await
            .expect_err("a list holding it is refused too");
        for err in [one, listed] {
            let text = err.to_string();
            assert!(
                text.contains(column) && text.contains(said),
                "the error names the column and the value: {text}"
            );
        }
        execute_raw(
            &url,
            &format!("UPDATE agent_tokens SET {column} = '{good}'"),
        )
        .await;
        let back = store
            .get_agent_token(&org.id, &dep.id, &t.token.id)
            .await
            .expect("read once the name is known again")
            .expect("found");
        assert_eq!(back, t.token, "the stored names read back as written");
    }
    store.close().await;
}

/// sqlx's migration lock does nothing on SQLite: stores opening one new file
/// at once must still all come up (the losers retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_opening_a_new_file_together_all_migrate() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("race.db").display());
        let opened = tokio::join!(
            store::open(&url),
            store::open(&url),
            store::open(&url),
            store::open(&url)
        );
        for result in [opened.0, opened.1, opened.2, opened.3] {
            let store = result.unwrap_or_else(|e| panic!("an opener failed: {e}"));
            store.ping().await.expect("ping");
            store.close().await;
        }
    }
}

/// An event is written in the change's transaction: kept with a change,
/// gone with a refused one, and read back per organization and window.
async fn audit_events_commit_with_their_change(store: Arc<dyn Store>) {
    let (org, _, dep) = scaffold(store.as_ref()).await;
    let event = |at: i64, action: &str| agentkey::model::AuditEvent {
        organization_id: Some(org.id.clone()),
        occurred_at: at,
        action: action.into(),
        ..crate::common::audit()
    };
    let everything = |store: Arc<dyn Store>, window: store::AuditQuery| {
        let org = org.id.clone();
        async move {
            let page = PageRequest {
                offset: 0,
                limit: 100,
                sorts: vec![],
            };
            store
                .list_audit_events(&org, &window, &page)
                .await
                .expect("list")
        }
    };
    let kept = token_in(&dep, "kept", 10);
    let written = event(100, "agentToken.create");
    store
        .create_agent_token(&kept, 1, &written)
        .await
        .expect("create");
    let refused = token_in(&dep, "refused", 11);
    let result = store
        .create_agent_token(&refused, 1, &event(200, "agentToken.create.refused"))
        .await;
    assert!(matches!(
        result,
        Err(StoreError::AgentTokenLimit { limit: 1 })
    ));
    let missing = store
        .delete_agent_token(
            &org.id,
            &dep.id,
            &new_id(),
            &event(300, "agentToken.delete.missing"),
        )
        .await
        .expect("delete");
    assert_eq!(missing, None);

    let all = everything(store.clone(), store::AuditQuery::default()).await;
    assert_eq!(
        all.items,
        [written],
        "only the change that happened, as written"
    );

    let window = |from, until| store::AuditQuery {
        from,
        until,
        action: None,
    };
    assert_eq!(
        everything(store.clone(), window(Some(100), Some(101)))
            .await
            .total,
        1
    );
    assert_eq!(
        everything(store.clone(), window(Some(101), None))
            .await
            .total,
        0
    );
    assert_eq!(
        everything(store.clone(), window(None, Some(100)))
            .await
            .total,
        0
    );
    let other_org = store
        .list_audit_events(
            &new_id(),
            &store::AuditQuery::default(),
            &PageRequest {
                offset: 0,
                limit: 10,
                sorts: vec![],
            },
        )
        .await
        .expect("list");
    assert_eq!(other_org.total, 0);
}

// ---------------------------------------------------------------------------
// API tokens
// ---------------------------------------------------------------------------

/// An API token scoped to `entity`, holding `roles` (sorted as the store
/// answers them: organization, workspace, deployment, then id).
fn api_token_in(
    org: &Organization,
    scope: EntityType,
    entity: &str,
    roles: Vec<RoleGrant>,
    name: &str,
    at: i64,
) -> NewApiToken {
    let mut roles = roles;
    roles.sort_by(|a, b| (a.entity_type(), &a.entity_id).cmp(&(b.entity_type(), &b.entity_id)));
    NewApiToken {
        token: ApiToken {
            id: new_id(),
            organization_id: org.id.clone(),
            name: name.into(),
            description: String::new(),
            short_token: "akapi_abcd".into(),
            scope,
            entity_id: entity.into(),
            roles,
            expiry_period_in_days: None,
            start_at: at,
            end_at: None,
            created_at: at,
            updated_at: at,
            created_by: user("creator"),
            updated_by: user("creator"),
            last_rotated_at: None,
        },
        secret_digest: Digest::of(&format!("akapi_secret_{}", new_id())),
    }
}

async fn api_tokens_round_trip(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let mut full = api_token_in(
        &org,
        EntityType::Organization,
        &org.id,
        vec![
            RoleGrant::new(Role::DeploymentAdmin, dep.id.clone()),
            RoleGrant::new(Role::OrganizationMember, org.id.clone()),
            RoleGrant::new(Role::WorkspaceOwner, ws.id.clone()),
        ],
        "full",
        10,
    );
    full.token.description = "every optional field set".into();
    full.token.expiry_period_in_days = Some(30);
    full.token.end_at = Some(10 + 30 * 86_400);
    let bare = api_token_in(
        &org,
        EntityType::Deployment,
        &dep.id,
        vec![RoleGrant::new(Role::DeploymentAdmin, dep.id.clone())],
        "bare",
        20,
    );
    store
        .create_api_token(&full, &crate::common::audit())
        .await
        .expect("create");
    store
        .create_api_token(&bare, &crate::common::audit())
        .await
        .expect("create");
    assert_eq!(
        full.token.roles[0].entity_type(),
        EntityType::Organization,
        "roles come sorted"
    );

    for t in [&full, &bare] {
        let got = store
            .get_api_token(&org.id, &t.token.id)
            .await
            .expect("get");
        assert_eq!(got, Some(t.token.clone()));
    }
    let page = store
        .list_api_tokens(&org.id, &ApiTokenFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!(
        (page.total, page.items),
        (2, vec![full.token.clone(), bare.token.clone()])
    );
    let other = new_id();
    assert_eq!(
        store
            .get_api_token(&other, &full.token.id)
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        store
            .list_api_tokens(&other, &ApiTokenFilter::default(), &all())
            .await
            .expect("list")
            .total,
        0
    );

    let credential = store
        .find_api_credential(&full.secret_digest)
        .await
        .expect("find");
    assert_eq!(
        credential,
        Some(ApiCredential {
            token_id: full.token.id.clone(),
            organization_id: org.id.clone(),
            name: "full".into(),
            end_at: full.token.end_at,
            roles: full.token.roles.clone(),
        })
    );
    let unknown = Digest::of("akapi_never_issued");
    assert_eq!(
        store.find_api_credential(&unknown).await.expect("find"),
        None
    );
    // An agent token's digest is not an API token's, nor the reverse.
    assert_eq!(
        store
            .find_agent_credential(&full.secret_digest)
            .await
            .expect("find"),
        None
    );
}

async fn api_token_lists_filter_by_role_and_page(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let ws2 = workspace_in(&org, "other", "", 4);
    store
        .create_workspace(&ws2, &crate::common::audit())
        .await
        .expect("create workspace");
    let org_token = api_token_in(
        &org,
        EntityType::Organization,
        &org.id,
        vec![
            RoleGrant::new(Role::OrganizationOwner, org.id.clone()),
            RoleGrant::new(Role::DeploymentAdmin, dep.id.clone()),
        ],
        "org",
        10,
    );
    let ws_token = api_token_in(
        &org,
        EntityType::Workspace,
        &ws.id,
        vec![
            RoleGrant::new(Role::WorkspaceMember, ws.id.clone()),
            RoleGrant::new(Role::DeploymentAdmin, dep.id.clone()),
        ],
        "ws",
        11,
    );
    let ws2_token = api_token_in(
        &org,
        EntityType::Workspace,
        &ws2.id,
        vec![RoleGrant::new(Role::WorkspaceOwner, ws2.id.clone())],
        "ws2",
        12,
    );
    for t in [&org_token, &ws_token, &ws2_token] {
        store
            .create_api_token(t, &crate::common::audit())
            .await
            .expect("create");
    }
    let list = |workspace: Option<&str>, deployment: Option<&str>, page: PageRequest| {
        let store = store.clone();
        let org = org.id.clone();
        let filter = ApiTokenFilter {
            workspace: workspace.map(str::to_string),
            deployment: deployment.map(str::to_string),
            homes: None,
            scope: None,
        };
        async move {
            store
                .list_api_tokens(&org, &filter, &page)
                .await
                .expect("list")
        }
    };
    let names = |page: &store::Page<ApiToken>| -> Vec<String> {
        page.items.iter().map(|t| t.name.clone()).collect()
    };
    assert_eq!(names(&list(None, None, all()).await), ["org", "ws", "ws2"]);
    assert_eq!(names(&list(Some(&ws.id), None, all()).await), ["ws"]);
    assert_eq!(names(&list(Some(&ws2.id), None, all()).await), ["ws2"]);
    assert_eq!(
        names(&list(None, Some(&dep.id), all()).await),
        ["org", "ws"]
    );
    assert_eq!(
        names(&list(Some(&ws.id), Some(&dep.id), all()).await),
        ["ws"]
    );
    assert_eq!(list(None, Some(&new_id()), all()).await.total, 0);

    let page = list(None, None, window(1, 1)).await;
    assert_eq!((page.total, names(&page)), (3, vec!["ws".to_string()]));
    let page = list(None, Some(&dep.id), window(0, 0)).await;
    assert_eq!((page.total, page.items.len()), (2, 0));
    let sorted = list(
        None,
        None,
        sorted_by(&[Sort {
            column: SortColumn::Name,
            descending: true,
        }]),
    )
    .await;
    assert_eq!(names(&sorted), ["ws2", "ws", "org"]);
    // Every listed token carries all of its roles, not only the matching one.
    let page = list(None, Some(&dep.id), all()).await;
    assert_eq!(page.items[0].roles, org_token.token.roles);
}

async fn api_token_changes_are_whole(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let new = api_token_in(
        &org,
        EntityType::Workspace,
        &ws.id,
        vec![RoleGrant::new(Role::WorkspaceOwner, ws.id.clone())],
        "before",
        10,
    );
    store
        .create_api_token(&new, &crate::common::audit())
        .await
        .expect("create");
    let actor = Subject {
        id: new_id(),
        subject_type: SubjectType::ServiceKey,
        api_token_name: Some("ci".into()),
    };
    let change = |at: i64, edit: ApiTokenEdit| ApiTokenChange {
        organization_id: org.id.clone(),
        token_id: new.token.id.clone(),
        at,
        actor: actor.clone(),
        edit,
    };

    let renamed = store
        .update_api_token(
            &change(
                20,
                ApiTokenEdit::Rename {
                    name: "after".into(),
                    description: "d".into(),
                },
            ),
            &crate::common::audit(),
        )
        .await
        .expect("update")
        .expect("exists");
    let mut want = new.token.clone();
    want.name = "after".into();
    want.description = "d".into();
    want.updated_at = 20;
    want.updated_by = actor.clone();
    assert_eq!(renamed, want);

    let roles = vec![
        RoleGrant::new(Role::WorkspaceAccessor, ws.id.clone()),
        RoleGrant::new(Role::DeploymentAdmin, dep.id.clone()),
    ];
    let changed = store
        .update_api_token(
            &change(30, ApiTokenEdit::Roles(roles.clone())),
            &crate::common::audit(),
        )
        .await
        .expect("update")
        .expect("exists");
    want.roles = roles;
    want.updated_at = 30;
    assert_eq!(changed, want);
    let credential = store
        .find_api_credential(&new.secret_digest)
        .await
        .expect("find")
        .expect("still valid");
    assert_eq!(credential.roles, want.roles, "the old roles are gone");

    let fresh = Digest::of("akapi_rotated");
    let rotated = store
        .update_api_token(
            &change(
                40,
                ApiTokenEdit::Rotate {
                    secret_digest: fresh,
                    short_token: "akapi_rota".into(),
                },
            ),
            &crate::common::audit(),
        )
        .await
        .expect("update")
        .expect("exists");
    want.short_token = "akapi_rota".into();
    want.last_rotated_at = Some(40);
    want.updated_at = 40;
    assert_eq!(rotated, want);
    assert_eq!(
        store
            .find_api_credential(&new.secret_digest)
            .await
            .expect("find"),
        None,
        "the old secret stops at once"
    );
    assert!(store
        .find_api_credential(&fresh)
        .await
        .expect("find")
        .is_some());

    // No such token (or not in this organization): nothing changes.
    let mut elsewhere = change(50, ApiTokenEdit::Roles(vec![]));
    elsewhere.organization_id = new_id();
    assert_eq!(
        store
            .update_api_token(&elsewhere, &crate::common::audit())
            .await
            .expect("update"),
        None
    );
    let mut missing = change(50, ApiTokenEdit::Roles(vec![]));
    missing.token_id = new_id();
    assert_eq!(
        store
            .update_api_token(&missing, &crate::common::audit())
            .await
            .expect("update"),
        None
    );
    assert_eq!(
        store
            .get_api_token(&org.id, &new.token.id)
            .await
            .expect("get"),
        Some(want)
    );
}

async fn deleting_an_api_token_deletes_its_roles(store: Arc<dyn Store>) {
    let (org, ws, _) = scaffold(store.as_ref()).await;
    let doomed = api_token_in(
        &org,
        EntityType::Workspace,
        &ws.id,
        vec![RoleGrant::new(Role::WorkspaceOwner, ws.id.clone())],
        "doomed",
        10,
    );
    let survivor = api_token_in(
        &org,
        EntityType::Workspace,
        &ws.id,
        vec![RoleGrant::new(Role::WorkspaceMember, ws.id.clone())],
        "survivor",
        11,
    );
    store
        .create_api_token(&doomed, &crate::common::audit())
        .await
        .expect("create");
    store
        .create_api_token(&survivor, &crate::common::audit())
        .await
        .expect("create");

    assert!(!store
        .delete_api_token(&new_id(), &doomed.token.id, &crate::common::audit())
        .await
        .expect("delete"));
    assert!(store
        .delete_api_token(&org.id, &doomed.token.id, &crate::common::audit())
        .await
        .expect("delete"));
    assert!(!store
        .delete_api_token(&org.id, &doomed.token.id, &crate::common::audit())
        .await
        .expect("delete"));
    assert_eq!(
        store
            .find_api_credential(&doomed.secret_digest)
            .await
            .expect("find"),
        None
    );
    let filter = ApiTokenFilter {
        workspace: Some(ws.id.clone()),
        deployment: None,
        homes: None,
        scope: None,
    };
    let page = store
        .list_api_tokens(&org.id, &filter, &all())
        .await
        .expect("list");
    assert_eq!(page.items, vec![survivor.token.clone()]);

    // A token with the same id can be created again: no role row was left.
    let mut again = doomed.clone();
    again.secret_digest = Digest::of("akapi_again");
    store
        .create_api_token(&again, &crate::common::audit())
        .await
        .expect("create again");
    assert_eq!(
        store
            .get_api_token(&org.id, &doomed.token.id)
            .await
            .expect("get"),
        Some(again.token)
    );
}

async fn an_api_token_is_written_whole_or_not_at_all(store: Arc<dyn Store>) {
    let (org, ws, _) = scaffold(store.as_ref()).await;
    let first = api_token_in(
        &org,
        EntityType::Workspace,
        &ws.id,
        vec![RoleGrant::new(Role::WorkspaceOwner, ws.id.clone())],
        "first",
        10,
    );
    store
        .create_api_token(&first, &crate::common::audit())
        .await
        .expect("create");
    // Same secret digest: the insert fails, and none of its roles remain.
    let mut clash = api_token_in(
        &org,
        EntityType::Organization,
        &org.id,
        vec![RoleGrant::new(Role::OrganizationOwner, org.id.clone())],
        "clash",
        11,
    );
    clash.secret_digest = first.secret_digest;
    assert!(store
        .create_api_token(&clash, &crate::common::audit())
        .await
        .is_err());
    assert_eq!(
        store
            .get_api_token(&org.id, &clash.token.id)
            .await
            .expect("get"),
        None
    );
    // Two roles on one entity: the roles insert fails, and so does the token.
    let doubled = api_token_in(
        &org,
        EntityType::Workspace,
        &ws.id,
        vec![
            RoleGrant::new(Role::WorkspaceOwner, ws.id.clone()),
            RoleGrant::new(Role::WorkspaceMember, ws.id.clone()),
        ],
        "doubled",
        12,
    );
    assert!(store
        .create_api_token(&doubled, &crate::common::audit())
        .await
        .is_err());
    assert_eq!(
        store
            .get_api_token(&org.id, &doubled.token.id)
            .await
            .expect("get"),
        None
    );
    // A role change that fails leaves the old roles in place.
    let failing = ApiTokenChange {
        organization_id: org.id.clone(),
        token_id: first.token.id.clone(),
        at: 20,
        actor: user("x"),
        edit: ApiTokenEdit::Roles(doubled.token.roles.clone()),
    };
    assert!(store
        .update_api_token(&failing, &crate::common::audit())
        .await
        .is_err());
    assert_eq!(
        store
            .get_api_token(&org.id, &first.token.id)
            .await
            .expect("get"),
        Some(first.token)
    );
}

// ---------------------------------------------------------------------------
// Registry fields, updates and workspace deletes (issue 13, items 4 and 5)
// ---------------------------------------------------------------------------

/// Every page of the organization's audit trail (the events the store
/// recorded with their changes).
async fn audit_actions(store: &dyn Store, org: &str) -> Vec<String> {
    let page = PageRequest {
        offset: 0,
        limit: 1000,
        sorts: vec![],
    };
    store
        .list_audit_events(org, &store::AuditQuery::default(), &page)
        .await
        .expect("list audit events")
        .items
        .into_iter()
        .map(|e| e.action)
        .collect()
}

fn event_in(org: &Organization, action: &str) -> agentkey::model::AuditEvent {
    agentkey::model::AuditEvent {
        organization_id: Some(org.id.clone()),
        action: action.into(),
        ..crate::common::audit()
    }
}

// ---------------------------------------------------------------------------
// Allowed IP address ranges
// ---------------------------------------------------------------------------

fn range_in(org: &Organization, cidr: &str, at: i64) -> AllowedIpRange {
    AllowedIpRange {
        id: new_id(),
        organization_id: org.id.clone(),
        ip_address_range: cidr.into(),
        created_at: at,
        updated_at: at,
        created_by: user("creator"),
        updated_by: user("creator"),
    }
}

fn range_audit(org: &Organization, action: &str, target: &str) -> AuditEvent {
    AuditEvent {
        organization_id: Some(org.id.clone()),
        action: action.into(),
        target_id: target.into(),
        ..crate::common::audit()
    }
}

async fn registry_fields_round_trip(store: Arc<dyn Store>) {
    let org = Organization {
        created_by: service_key("c00000000000000000000tok1", "ci"),
        updated_by: user("someone-else"),
        ..org_named("fields", 5)
    };
    store
        .create_organization(&org, &crate::common::audit())
        .await
        .expect("create org");
    let mut workspaces = Vec::new();
    let mut deployments = Vec::new();
    for (i, enforced) in [true, false].into_iter().enumerate() {
        let ws = Workspace {
            cicd_enforced_default: enforced,
            created_by: service_key("c00000000000000000000tok2", "terraform"),
            ..workspace_in(&org, &format!("ws{i}"), "a description", 6 + i as i64)
        };
        store
            .create_workspace(&ws, &crate::common::audit())
            .await
            .expect("create workspace");
        workspaces.push(ws);
    }
    for (i, kind) in DeploymentType::ALL.into_iter().enumerate() {
        let dep = Deployment {
            deployment_type: kind,
            is_cicd_enforced: i % 2 == 0,
            updated_by: service_key("c00000000000000000000tok3", "cli"),
            ..deployment_in(&workspaces[0], &format!("dep{i}"), "", 10 + i as i64)
        };
        store
            .create_deployment(&dep, &crate::common::audit())
            .await
            .expect("create deployment");
        deployments.push(dep);
    }

    assert_eq!(
        store.get_organization(&org.id).await.expect("get"),
        Some(org.clone())
    );
    for ws in &workspaces {
        assert_eq!(
            store.get_workspace(&org.id, &ws.id).await.expect("get"),
            Some(ws.clone()),
            "the workspace reads back with its organization's name"
        );
    }
    for dep in &deployments {
        assert_eq!(
            store.get_deployment(&org.id, &dep.id).await.expect("get"),
            Some(dep.clone())
        );
    }
    let listed = store
        .list_workspaces(&org.id, &PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!(listed.items, workspaces);
    let sorted = store
        .list_workspaces(
            &org.id,
            &PlaceFilter::default(),
            &sorted_by(&[Sort {
                column: SortColumn::Name,
                descending: true,
            }]),
        )
        .await
        .expect("list");
    assert_eq!(
        sorted
            .items
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["ws1", "ws0"],
        "`name` sorts by the workspace's name, not its organization's"
    );
    let listed = store
        .list_deployments(&org.id, &PlaceFilter::default(), &all())
        .await
        .expect("list");
    assert_eq!(listed.items, deployments);
}

async fn registry_updates_write_whole_with_their_event(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let editor = service_key("c00000000000000000000edit", "editor");

    let renamed = Organization {
        name: "renamed".into(),
        updated_at: 50,
        updated_by: editor.clone(),
        ..org.clone()
    };
    assert!(store
        .update_organization(&renamed, &event_in(&org, "organization.update"))
        .await
        .expect("update"));
    assert_eq!(
        store.get_organization(&org.id).await.expect("get"),
        Some(renamed.clone())
    );
    let ws_now = store
        .get_workspace(&org.id, &ws.id)
        .await
        .expect("get")
        .expect("the workspace");
    assert_eq!(
        ws_now.organization_name, "renamed",
        "a workspace answers its organization's current name"
    );

    let edited = Workspace {
        name: "edited".into(),
        description: "".into(),
        cicd_enforced_default: true,
        updated_at: 60,
        updated_by: editor.clone(),
        organization_name: "renamed".into(),
        ..ws.clone()
    };
    assert!(store
        .update_workspace(&edited, &event_in(&org, "workspace.update"))
        .await
        .expect("update"));
    assert_eq!(
        store.get_workspace(&org.id, &ws.id).await.expect("get"),
        Some(edited.clone())
    );

    let changed = Deployment {
        name: "changed".into(),
        description: "now described".into(),
        is_cicd_enforced: true,
        updated_at: 70,
        updated_by: editor.clone(),
        ..dep.clone()
    };
    assert!(store
        .update_deployment(&changed, &event_in(&org, "deployment.update"))
        .await
        .expect("update"));
    assert_eq!(
        store.get_deployment(&org.id, &dep.id).await.expect("get"),
        Some(changed.clone())
    );

    // Nothing to update: false, and no event.
    let ghost_org = org_named("ghost", 1);
    assert!(!store
        .update_organization(&ghost_org, &event_in(&org, "ghost.update"))
        .await
        .expect("update"));
    let elsewhere = Workspace {
        organization_id: ghost_org.id.clone(),
        ..edited.clone()
    };
    assert!(
        !store
            .update_workspace(&elsewhere, &event_in(&org, "ghost.update"))
            .await
            .expect("update"),
        "a workspace is updated only in its own organization"
    );
    let missing = Deployment {
        id: new_id(),
        ..changed.clone()
    };
    assert!(!store
        .update_deployment(&missing, &event_in(&org, "ghost.update"))
        .await
        .expect("update"));
    assert_eq!(
        store.get_workspace(&org.id, &ws.id).await.expect("get"),
        Some(edited)
    );
    let actions = audit_actions(store.as_ref(), &org.id).await;
    assert_eq!(
        actions,
        [
            "organization.update",
            "workspace.update",
            "deployment.update"
        ]
    );
}

async fn a_workspace_is_deleted_only_when_empty(store: Arc<dyn Store>) {
    let (org, ws, dep) = scaffold(store.as_ref()).await;
    let other = workspace_in(&org, "other", "", 4);
    store
        .create_workspace(&other, &crate::common::audit())
        .await
        .expect("create workspace");
    // An API token made for the workspace, and an organization token
    // holding a role on it as well as one on the other workspace.
    let ws_token = api_token_in(
        &org,
        EntityType::Workspace,
        &ws.id,
        vec![RoleGrant::new(Role::WorkspaceOwner, ws.id.clone())],
        "ws token",
        5,
    );
    let org_token = api_token_in(
        &org,
        EntityType::Organization,
        &org.id,
        vec![
            RoleGrant::new(Role::OrganizationMember, org.id.clone()),
            RoleGrant::new(Role::WorkspaceOwner, ws.id.clone()),
            RoleGrant::new(Role::WorkspaceMember, other.id.clone()),
        ],
        "org token",
        6,
    );
    for t in [&ws_token, &org_token] {
        store
            .create_api_token(t, &crate::common::audit())
            .await
            .expect("create token");
    }

    let refused = store
        .delete_workspace(&org.id, &ws.id, &event_in(&org, "workspace.delete.refused"))
        .await
        .expect("delete");
    assert_eq!(refused, WorkspaceDeletion::HasDeployments(1));
    assert!(
        store
            .get_workspace(&org.id, &ws.id)
            .await
            .expect("get")
            .is_some(),
        "a workspace with a deployment stays"
    );
    assert!(
        store
            .get_api_token(&org.id, &ws_token.token.id)
            .await
            .expect("get")
            .is_some(),
        "a refused delete takes nothing with it"
    );
    assert_eq!(
        store
            .get_api_token(&org.id, &org_token.token.id)
            .await
            .expect("get")
            .expect("the token")
            .roles
            .len(),
        3
    );

    store
        .delete_deployment(&org.id, &dep.id, &crate::common::audit())
        .await
        .expect("delete deployment")
        .expect("there was one");
    assert_eq!(
        store
            .delete_workspace(&org.id, &ws.id, &event_in(&org, "workspace.delete"))
            .await
            .expect("delete"),
        WorkspaceDeletion::Deleted
    );
    assert_eq!(
        store.get_workspace(&org.id, &ws.id).await.expect("get"),
        None
    );
    assert_eq!(
        store
            .get_api_token(&org.id, &ws_token.token.id)
            .await
            .expect("get"),
        None,
        "the API token made for the workspace goes with it"
    );
    let kept = store
        .get_api_token(&org.id, &org_token.token.id)
        .await
        .expect("get")
        .expect("the organization's token stays");
    assert_eq!(
        kept.roles,
        vec![
            RoleGrant::new(Role::OrganizationMember, org.id.clone()),
            RoleGrant::new(Role::WorkspaceMember, other.id.clone()),
        ],
        "its role on the deleted workspace is gone, the others stay"
    );
    assert_eq!(
        store
            .delete_workspace(&org.id, &ws.id, &event_in(&org, "workspace.delete.again"))
            .await
            .expect("delete"),
        WorkspaceDeletion::NotFound
    );
    assert_eq!(
        store
            .delete_workspace(
                &new_id(),
                &other.id,
                &event_in(&org, "workspace.delete.elsewhere")
            )
            .await
            .expect("delete"),
        WorkspaceDeletion::NotFound,
        "a workspace is deleted only in its own organization"
    );
    assert!(store
        .get_workspace(&org.id, &other.id)
        .await
        .expect("get")
        .is_some());
    // A deployment into the deleted workspace (a create that looked the
    // workspace up before the delete) is refused by name, not as a failure.
    let late = deployment_in(&ws, "late", "", 9);
    assert!(matches!(
        store
            .create_deployment(&late, &event_in(&org, "deployment.create.late"))
            .await,
        Err(StoreError::WorkspaceNotFound)
    ));
    assert_eq!(
        store.get_deployment(&org.id, &late.id).await.expect("get"),
        None
    );
    assert_eq!(
        audit_actions(store.as_ref(), &org.id).await,
        ["workspace.delete"]
    );
}

/// Migration 0008 on a database that already holds an organization, a
/// workspace and a deployment (made under 0007): each takes its creator
/// from its create event in the audit trail; one without an event answers
/// `unrecorded`.
async fn old_rows_take_their_makers_from_the_audit_trail(url: String) {
    use std::borrow::Cow;
    let before_0008 = |all: &sqlx::migrate::Migrator| sqlx::migrate::Migrator {
        migrations: Cow::Owned(
            all.migrations
                .iter()
                .filter(|m| m.version < 8)
                .cloned()
                .collect(),
        ),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    let (org, ws, dep, lone) = (new_id(), new_id(), new_id(), new_id());
    let rows = [
        format!("INSERT INTO organizations (id, name, created_at, updated_at) VALUES ('{org}', 'old', 1, 1)"),
        format!("INSERT INTO organizations (id, name, created_at, updated_at) VALUES ('{lone}', 'lone', 1, 1)"),
        format!("INSERT INTO workspaces (id, organization_id, name, description, created_at, updated_at) VALUES ('{ws}', '{org}', 'w', '', 2, 2)"),
        format!("INSERT INTO deployments (id, organization_id, workspace_id, name, description, created_at, updated_at) VALUES ('{dep}', '{org}', '{ws}', 'd', '', 3, 3)"),
        format!("INSERT INTO audit_events (id, organization_id, created_at, actor_id, actor_type, actor_name, action, target_type, target_id) VALUES ('{}', NULL, 1, 'root-id', 'SERVICEKEY', 'root', 'organization.create', 'ORGANIZATION', '{org}')", new_id()),
        format!("INSERT INTO audit_events (id, organization_id, created_at, actor_id, actor_type, actor_name, action, target_type, target_id) VALUES ('{}', '{org}', 2, 'tok-id', 'SERVICEKEY', 'terraform', 'workspace.create', 'WORKSPACE', '{ws}')", new_id()),
        format!("INSERT INTO audit_events (id, organization_id, created_at, actor_id, actor_type, actor_name, action, target_type, target_id) VALUES ('{}', '{org}', 3, 'user-id', 'USER', NULL, 'deployment.create', 'DEPLOYMENT', '{dep}')", new_id()),
    ];
    if url.starts_with("sqlite:") {
        use std::str::FromStr;
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .expect("url")
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(options)
            .await
            .expect("connect");
        before_0008(&sqlx::migrate!("migrations/sqlite"))
            .run(&pool)
            .await
            .expect("migrate to 0007");
        for row in &rows {
            sqlx::query(row).execute(&pool).await.expect(row);
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        before_0008(&sqlx::migrate!("migrations/postgres"))
            .run(&pool)
            .await
            .expect("migrate to 0007");
        for row in &rows {
            sqlx::query(row).execute(&pool).await.expect(row);
        }
        pool.close().await;
    }

    let store = store::open(&url).await.expect("open and migrate");
    let root = service_key("root-id", "root");
    let got = store
        .get_organization(&org)
        .await
        .expect("get")
        .expect("org");
    assert_eq!((&got.created_by, &got.updated_by), (&root, &root));
    let got = store
        .get_workspace(&org, &ws)
        .await
        .expect("get")
        .expect("ws");
    let terraform = service_key("tok-id", "terraform");
    assert_eq!((&got.created_by, &got.updated_by), (&terraform, &terraform));
    assert_eq!(got.organization_name, "old");
    assert!(!got.cicd_enforced_default);
    let got = store
        .get_deployment(&org, &dep)
        .await
        .expect("get")
        .expect("dep");
    assert_eq!(got.created_by, user("user-id"));
    assert_eq!(got.updated_by, user("user-id"));
    assert_eq!(got.deployment_type, DeploymentType::Standard);
    assert!(!got.is_cicd_enforced);
    let got = store
        .get_organization(&lone)
        .await
        .expect("get")
        .expect("org");
    assert_eq!(got.created_by.id, "unrecorded");
    store.close().await;
}

/// PostgreSQL only (SQLite has one writer, so the check and the delete
/// cannot interleave with an insert): a deployment inserted into the
/// workspace while a delete of the workspace runs, and committed after the
/// delete's snapshot, keeps the workspace; the delete answers that it has
/// deployments, not a store failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "PostgreSQL: set AGENTKEY_TEST_DATABASE_URL to run it"
)]
async fn postgres_a_deployment_committed_during_a_workspace_delete_keeps_it() {
    fresh_postgres(|url| async move {
        let store = store::open(&url).await.expect("open");
        let (org, ws, dep) = scaffold(store.as_ref()).await;
        store
            .delete_deployment(&org.id, &dep.id, &crate::common::audit())
            .await
            .expect("delete")
            .expect("there was one");
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        let mut insert = pool.begin().await.expect("begin");
        let late = new_id();
        sqlx::query(
            "INSERT INTO deployments (id, organization_id, workspace_id, name, description, \
             created_at, updated_at) VALUES ($1, $2, $3, 'late', '', 1, 1)",
        )
        .bind(&late)
        .bind(&org.id)
        .bind(&ws.id)
        .execute(&mut *insert)
        .await
        .expect("insert");
        let deleting = {
            let store = store.clone();
            let (org, ws) = (org.id.clone(), ws.id.clone());
            tokio::spawn(async move {
                store
                    .delete_workspace(&org, &ws, &crate::common::audit())
                    .await
            })
        };
        // Wait until the delete waits for the insert's lock on the row.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .expect("pg_stat_activity");
            if waiting > 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the delete never waited for the insert"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        insert.commit().await.expect("commit");
        let outcome = deleting.await.expect("join").expect("no store failure");
        assert_eq!(outcome, WorkspaceDeletion::HasDeployments(1));
        assert!(store
            .get_workspace(&org.id, &ws.id)
            .await
            .expect("get")
            .is_some());
        assert!(store
            .get_deployment(&org.id, &late)
            .await
            .expect("get")
            .is_some());
        pool.close().await;
        store.close().await;
    })
    .await;
}

async fn audit_count(store: &dyn Store, org: &Organization) -> i64 {
    store
        .list_audit_events(&org.id, &Default::default(), &all())
        .await
        .expect("audit")
        .total
}

async fn allowed_ranges_round_trip(store: Arc<dyn Store>) {
    let (org, _, _) = scaffold(store.as_ref()).await;
    let other = org_named("other", 1);
    store
        .create_organization(&other, &crate::common::audit())
        .await
        .expect("other org");
    assert!(
        !store
            .get_organization(&org.id)
            .await
            .unwrap()
            .unwrap()
            .has_allowed_ip_ranges
    );

    let ranges = [
        range_in(&org, "10.0.0.0/8", 10),
        range_in(&org, "2001:db8::/32", 11),
        range_in(&org, "192.0.2.7/32", 12),
    ];
    let events: Vec<AuditEvent> = ranges
        .iter()
        .map(|r| range_audit(&org, "allowedIpAddressRange.create", &r.id))
        .collect();
    store
        .create_allowed_ip_ranges(&ranges, 1000, LockOutGuard::Off, &events)
        .await
        .expect("create");
    assert_eq!(
        audit_count(store.as_ref(), &org).await,
        3,
        "one event per range"
    );

    let got = store.get_organization(&org.id).await.unwrap().unwrap();
    assert!(got.has_allowed_ip_ranges);
    let listed = store.list_organizations(&all()).await.unwrap().items;
    let flags: Vec<(String, bool)> = listed
        .iter()
        .map(|o| (o.id.clone(), o.has_allowed_ip_ranges))
        .collect();
    assert!(flags.contains(&(org.id.clone(), true)));
    assert!(flags.contains(&(other.id.clone(), false)));

    let page = store
        .list_allowed_ip_ranges(&org.id, &all())
        .await
        .expect("list");
    assert_eq!(page.total, 3);
    assert_eq!(page.items, ranges.to_vec(), "created order, whole records");
    assert_eq!(
        store.allowed_ip_ranges_of(&org.id).await.unwrap(),
        vec!["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]
    );
    // Sorted by the range's text (byte order), and paged.
    let by_text = store
        .list_allowed_ip_ranges(
            &org.id,
            &PageRequest {
                offset: 1,
                limit: 1,
                sorts: vec![Sort {
                    column: SortColumn::IpAddressRange,
                    descending: false,
                }],
            },
        )
        .await
        .unwrap();
    assert_eq!(by_text.total, 3);
    assert_eq!(by_text.items[0].ip_address_range, "192.0.2.7/32");
    assert!(store
        .list_allowed_ip_ranges(&other.id, &all())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .allowed_ip_ranges_of(&other.id)
        .await
        .unwrap()
        .is_empty());
}

async fn allowed_ranges_are_added_all_or_none(store: Arc<dyn Store>) {
    let (org, _, _) = scaffold(store.as_ref()).await;
    let first = [range_in(&org, "10.0.0.0/8", 10)];
    store
        .create_allowed_ip_ranges(&first, 3, LockOutGuard::Off, &[range_audit(&org, "a", "t")])
        .await
        .expect("first");
    let before = audit_count(store.as_ref(), &org).await;

    // One already present: nothing added, the present one named.
    let clash = [
        range_in(&org, "172.16.0.0/12", 11),
        range_in(&org, "10.0.0.0/8", 11),
    ];
    match store
        .create_allowed_ip_ranges(&clash, 3, LockOutGuard::Off, &[range_audit(&org, "a", "t")])
        .await
    {
        Err(StoreError::AllowedIpRangeExists(present)) => assert_eq!(present, ["10.0.0.0/8"]),
        other => panic!("expected AllowedIpRangeExists, got {other:?}"),
    }
    // Over the limit: nothing added either.
    let many = [
        range_in(&org, "172.16.0.0/12", 12),
        range_in(&org, "192.168.0.0/16", 12),
        range_in(&org, "fc00::/7", 12),
    ];
    match store
        .create_allowed_ip_ranges(&many, 3, LockOutGuard::Off, &[range_audit(&org, "a", "t")])
        .await
    {
        Err(StoreError::AllowedIpRangeLimit { limit: 3 }) => {}
        other => panic!("expected AllowedIpRangeLimit, got {other:?}"),
    }
    assert_eq!(
        store.allowed_ip_ranges_of(&org.id).await.unwrap(),
        vec!["10.0.0.0/8"]
    );
    assert_eq!(audit_count(store.as_ref(), &org).await, before, "no event");
    // Up to the limit exactly is fine.
    store
        .create_allowed_ip_ranges(&many[..2], 3, LockOutGuard::Off, &[])
        .await
        .expect("up to the limit");
    assert_eq!(store.allowed_ip_ranges_of(&org.id).await.unwrap().len(), 3);
}

async fn allowed_ranges_are_deleted_in_bulk(store: Arc<dyn Store>) {
    let (org, _, _) = scaffold(store.as_ref()).await;
    let other = org_named("other", 1);
    store
        .create_organization(&other, &crate::common::audit())
        .await
        .unwrap();
    let ours = [
        range_in(&org, "10.0.0.0/8", 10),
        range_in(&org, "2001:db8::/32", 11),
        range_in(&org, "192.0.2.7/32", 12),
    ];
    let theirs = [range_in(&other, "10.0.0.0/8", 10)];
    store
        .create_allowed_ip_ranges(&ours, 1000, LockOutGuard::Off, &[])
        .await
        .unwrap();
    store
        .create_allowed_ip_ranges(&theirs, 1000, LockOutGuard::Off, &[])
        .await
        .unwrap();
    let before = audit_count(store.as_ref(), &org).await;

    // Repeats, an unknown id and another organization's id are passed over.
    let ids = vec![
        ours[0].id.clone(),
        ours[0].id.clone(),
        new_id(),
        theirs[0].id.clone(),
        ours[2].id.clone(),
    ];
    let template = range_audit(&org, "allowedIpAddressRange.delete", "");
    let deleted = store
        .delete_allowed_ip_ranges(&org.id, &ids, LockOutGuard::Off, &template)
        .await
        .expect("delete");
    assert_eq!(deleted, vec![ours[0].clone(), ours[2].clone()]);
    assert_eq!(
        store.allowed_ip_ranges_of(&org.id).await.unwrap(),
        vec!["2001:db8::/32"]
    );
    assert_eq!(
        store.allowed_ip_ranges_of(&other.id).await.unwrap(),
        vec!["10.0.0.0/8"]
    );
    let events = store
        .list_audit_events(&org.id, &Default::default(), &all())
        .await
        .unwrap()
        .items;
    assert_eq!(
        events.len() as i64,
        before + 2,
        "one event per deleted range"
    );
    let targets: BTreeSet<&str> = events[events.len() - 2..]
        .iter()
        .map(|e| e.target_id.as_str())
        .collect();
    assert_eq!(
        targets,
        BTreeSet::from([ours[0].id.as_str(), ours[2].id.as_str()])
    );
    // Nothing left to delete: an empty answer, no event.
    let again = store
        .delete_allowed_ip_ranges(&org.id, &ids, LockOutGuard::Off, &template)
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(audit_count(store.as_ref(), &org).await, before + 2);
    store
        .delete_allowed_ip_ranges(&org.id, &[ours[1].id.clone()], LockOutGuard::Off, &template)
        .await
        .unwrap();
    assert!(
        !store
            .get_organization(&org.id)
            .await
            .unwrap()
            .unwrap()
            .has_allowed_ip_ranges
    );
}

async fn agent_token_networks_round_trip(store: Arc<dyn Store>) {
    let (_, _, dep) = scaffold(store.as_ref()).await;
    let mut bound = token_in(&dep, "bound", 10);
    bound.token.allowed_ip_ranges = vec!["127.0.0.2/32".into(), "2001:db8::/32".into()];
    let free = token_in(&dep, "free", 11);
    for t in [&bound, &free] {
        store
            .create_agent_token(t, 50, &crate::common::audit())
            .await
            .expect("create");
    }
    let got = store
        .get_agent_token(&dep.organization_id, &dep.id, &bound.token.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, bound.token);
    let got = store
        .get_agent_token(&dep.organization_id, &dep.id, &free.token.id)
        .await
        .unwrap()
        .unwrap();
    assert!(got.allowed_ip_ranges.is_empty());
    let credential = store
        .find_agent_credential(&bound.secret_digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        credential
            .allowed_networks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["127.0.0.2/32", "2001:db8::/32"]
    );
    let credential = store
        .find_agent_credential(&free.secret_digest)
        .await
        .unwrap()
        .unwrap();
    assert!(credential.allowed_networks.is_empty());
}

/// Two pools on one database adding ranges to one organization at once:
/// the limit holds.
async fn concurrent_range_creates_through_two_pools_hold_the_limit(url: String) {
    let a = store::open(&url).await.expect("open a");
    let b = store::open(&url).await.expect("open b");
    let (org, _, _) = scaffold(a.as_ref()).await;
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let range = range_in(&org, &format!("10.{i}.0.0/16"), 10);
        tasks.push(tokio::spawn(async move {
            store
                .create_allowed_ip_ranges(&[range], 4, LockOutGuard::Off, &[])
                .await
        }));
    }
    let mut added = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(()) => added += 1,
            Err(StoreError::AllowedIpRangeLimit { limit: 4 }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 4);
    assert_eq!(a.allowed_ip_ranges_of(&org.id).await.unwrap().len(), 4);
    a.close().await;
    b.close().await;
}

/// A change that would leave the list not allowing the guarded address is
/// refused whole, decided inside its own transaction.
async fn allowlist_changes_keep_the_guarded_address(store: Arc<dyn Store>) {
    let (org, _, _) = scaffold(store.as_ref()).await;
    let caller: std::net::IpAddr = "192.0.2.5".parse().unwrap();
    let keep = LockOutGuard::Keep(Some(caller));
    let outside = [range_in(&org, "198.51.100.0/24", 10)];
    match store
        .create_allowed_ip_ranges(&outside, 1000, keep, &[range_audit(&org, "a", "t")])
        .await
    {
        Err(StoreError::WouldLockOut) => {}
        other => panic!("expected WouldLockOut, got {other:?}"),
    }
    assert!(store
        .allowed_ip_ranges_of(&org.id)
        .await
        .unwrap()
        .is_empty());
    let unknown = LockOutGuard::Keep(None);
    assert!(matches!(
        store
            .create_allowed_ip_ranges(&outside, 1000, unknown, &[])
            .await,
        Err(StoreError::WouldLockOut)
    ));
    let both = [
        range_in(&org, "192.0.2.0/24", 11),
        range_in(&org, "198.51.100.0/24", 11),
    ];
    store
        .create_allowed_ip_ranges(&both, 1000, keep, &[])
        .await
        .expect("the caller is covered");
    let before = audit_count(store.as_ref(), &org).await;
    let template = range_audit(&org, "allowedIpAddressRange.delete", "");
    // Deleting the covering range would shut the caller out: nothing goes.
    match store
        .delete_allowed_ip_ranges(&org.id, &[both[0].id.clone()], keep, &template)
        .await
    {
        Err(StoreError::WouldLockOut) => {}
        other => panic!("expected WouldLockOut, got {other:?}"),
    }
    assert_eq!(store.allowed_ip_ranges_of(&org.id).await.unwrap().len(), 2);
    assert_eq!(audit_count(store.as_ref(), &org).await, before, "no event");
    // Emptying the list keeps everyone allowed; so does an unguarded change.
    let all = vec![both[0].id.clone(), both[1].id.clone()];
    assert_eq!(
        store
            .delete_allowed_ip_ranges(&org.id, &all, keep, &template)
            .await
            .unwrap()
            .len(),
        2
    );
    store
        .create_allowed_ip_ranges(&outside, 1000, LockOutGuard::Off, &[])
        .await
        .expect("unguarded");
}
