//! An organization's webhook endpoints: the list, a form to create one (its
//! signing secret shown once), rotate and delete behind a confirm page, and
//! an endpoint's deliveries with a button to send each again. Without a
//! webhook key on the server the page says how to turn webhooks on and
//! offers no form.

use axum::extract::Path;
use axum::http::StatusCode;
use serde_json::json;

use super::*;
use crate::http::webhooks::{
    Webhook, WebhookDeliveriesPaginated, WebhookDelivery, WebhooksPaginated,
};
use crate::webhooks::EventType;

/// What the secret page says of a webhook's signing secret.
const LOST_SECRET: &str = "agentkey derives it from the server's webhook key and never stores or \
    shows it again. If it is lost, rotate the endpoint's secret.";

/// The most endpoints the page lists: more than an organization may have.
const ALL_ENDPOINTS: &str = "limit=100";

fn list_path(org: &str) -> String {
    format!("/console/organizations/{org}/webhooks")
}

pub async fn webhooks(ctx: Ctx, Path(org): Path<String>, Q(query): Q<NoticeQuery>) -> Page {
    let notice = notice(query.notice.as_deref());
    webhooks_page(&ctx, &org, FormState::default(), notice).await
}

async fn webhooks_page(ctx: &Ctx, org: &str, form: FormState, notice: Option<String>) -> Page {
    let status = failed_status(&form);
    let organization = ctx.organization(org).await?;
    let list: WebhooksPaginated = ctx
        .read(&format!(
            "/organizations/{org}/webhooks?{ALL_ENDPOINTS}&sorts=createdAt:asc"
        ))
        .await?;
    let mut layout = layout(ctx, "Webhooks", vec![home_link(), org_link(&organization)]);
    layout.notice = notice;
    let on = Resource::Organization(org);
    let enabled = ctx.console.state.settings.webhooks.key.is_some();
    Ok(render(
        WebhooksPage {
            layout,
            may_create: enabled && may(ctx, Action::CreateWebhook, on),
            may_rotate: enabled && may(ctx, Action::RotateWebhook, on),
            may_delete: may(ctx, Action::DeleteWebhook, on),
            enabled,
            org: organization,
            webhooks: list.webhooks.iter().map(webhook_row).collect(),
            event_types: EventType::ALL.iter().map(|t| t.as_str()).collect(),
            nonce: nonce(ctx),
            form,
        },
        status,
    ))
}

fn webhook_row(w: &Webhook) -> WebhookRow {
    let event_types = if w.event_types.iter().any(|t| t == "*") {
        "all".to_string()
    } else {
        w.event_types.join(", ")
    };
    WebhookRow {
        id: w.id.clone(),
        url: w.url.clone(),
        description: w.description.clone(),
        event_types,
        created_at: when(&w.created_at),
    }
}

/// The create form, as a browser sends it: `eventTypes` once per checked
/// box, so it is read as pairs rather than into a struct.
pub async fn create_webhook(
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<Vec<(String, String)>>,
) -> Page {
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let event_types: Vec<&str> = form
        .iter()
        .filter(|(k, _)| k == "eventTypes")
        .map(|(_, v)| v.as_str())
        .collect();
    let here = list_path(&org);
    spend_nonce(&ctx, field("nonce"), &here).await?;
    let body = json!({
        "url": field("url").trim(),
        "description": field("description"),
        "eventTypes": event_types,
    });
    let created = ctx
        .api
        .post::<Webhook>(&format!("/organizations/{org}/webhooks"), &body)
        .await;
    match created {
        Ok(hook) => Ok(show_secret(
            &ctx,
            "Webhook endpoint created",
            (&hook.url, hook.secret.as_ref()),
            LOST_SECRET,
            &here,
            "Back to the webhooks",
        )),
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::CONFLICT => {
            let checked = event_types.join(",");
            let values = [
                ("url", field("url")),
                ("description", field("description")),
                ("eventTypes", checked.as_str()),
            ];
            webhooks_page(&ctx, &org, form_state(&values, Some(e)), None).await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

/// The endpoint the path names, as the API answers it (never its secret).
async fn endpoint(ctx: &Ctx, org: &str, id: &str) -> Result<Webhook, Response> {
    ctx.read(&format!("/organizations/{org}/webhooks/{id}"))
        .await
}

/// What a confirm page about one endpoint asks.
struct Ask {
    title: &'static str,
    /// The question, before the endpoint's URL.
    question: &'static str,
    consequence: &'static str,
    /// The last path segment of the form's action, and its button.
    step: &'static str,
    button: &'static str,
    danger: bool,
    nonce: Option<String>,
}

async fn confirm(ctx: &Ctx, org: &str, id: &str, ask: Ask) -> Page {
    let hook = endpoint(ctx, org, id).await?;
    let back = list_path(org);
    Ok(render(
        ConfirmPage {
            layout: layout(
                ctx,
                ask.title,
                vec![home_link(), (back.clone(), "Webhooks".into())],
            ),
            question: format!("{} {}?", ask.question, hook.url),
            consequence: ask.consequence.to_string(),
            action: format!("{back}/{id}/{}", ask.step),
            button: ask.button.into(),
            danger: ask.danger,
            nonce: ask.nonce,
            back,
        },
        StatusCode::OK,
    ))
}

pub async fn rotate_webhook_form(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Page {
    let ask = Ask {
        title: "Rotate webhook secret",
        question: "Rotate the signing secret of",
        consequence: "The new secret is shown once, and signs every request from now on, \
                      retries included: the receiver must check signatures with it at once.",
        step: "rotate",
        button: "Rotate",
        danger: false,
        nonce: Some(nonce(&ctx)),
    };
    confirm(&ctx, &org, &id, ask).await
}

pub async fn rotate_webhook(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<NonceForm>,
) -> Page {
    let here = list_path(&org);
    spend_nonce(&ctx, &form.nonce, &here).await?;
    let hook = ctx
        .api
        .post::<Webhook>(
            &format!("/organizations/{org}/webhooks/{id}/rotate"),
            &json!({}),
        )
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(show_secret(
        &ctx,
        "Webhook secret rotated",
        (&hook.url, hook.secret.as_ref()),
        LOST_SECRET,
        &here,
        "Back to the webhooks",
    ))
}

pub async fn delete_webhook_form(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Page {
    let ask = Ask {
        title: "Delete webhook endpoint",
        question: "Delete the webhook endpoint",
        consequence: "Nothing more is sent to it, and its deliveries, pending ones \
                      included, are deleted with it. This cannot be undone.",
        step: "delete",
        button: "Delete",
        danger: true,
        nonce: None,
    };
    confirm(&ctx, &org, &id, ask).await
}

pub async fn delete_webhook(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, .. }: Posted<Nothing>,
) -> Page {
    ctx.api
        .delete(&format!("/organizations/{org}/webhooks/{id}"))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(see_other(&format!(
        "{}?notice=webhook-deleted",
        list_path(&org)
    )))
}

pub async fn webhook_deliveries(
    ctx: Ctx,
    Path((org, id)): Path<(String, String)>,
    Q(query): Q<ListQuery>,
) -> Page {
    let organization = ctx.organization(&org).await?;
    let webhook = endpoint(&ctx, &org, &id).await?;
    let offset = query.offset.max(0);
    let limit = page_size(query.limit);
    let list: WebhookDeliveriesPaginated = ctx
        .read(&format!(
            "/organizations/{org}/webhooks/{id}/deliveries?offset={offset}&limit={limit}"
        ))
        .await?;
    let here = format!("{}/{id}/deliveries", list_path(&org));
    let pager = pager(
        offset,
        limit,
        list.deliveries.len(),
        list.total_count,
        |o| format!("{here}?offset={o}&limit={limit}"),
    );
    let mut layout = layout(
        &ctx,
        "Webhook deliveries",
        vec![
            home_link(),
            org_link(&organization),
            (list_path(&org), "Webhooks".into()),
        ],
    );
    layout.notice = notice(query.notice.as_deref());
    Ok(render(
        WebhookDeliveriesPage {
            layout,
            may_redeliver: may(&ctx, Action::RedeliverWebhook, Resource::Organization(&org)),
            org: organization,
            webhook,
            deliveries: list.deliveries.iter().map(delivery_row).collect(),
            pager,
        },
        StatusCode::OK,
    ))
}

fn delivery_row(d: &WebhookDelivery) -> DeliveryRow {
    DeliveryRow {
        id: d.id.clone(),
        event_type: d.event_type.clone(),
        subject_id: d.subject_id.clone(),
        status: d.status.clone(),
        attempts: d.attempt_count,
        last_status_code: d
            .last_status_code
            .map_or_else(|| "—".to_string(), |c| c.to_string()),
        last_error: d.last_error.clone().unwrap_or_default(),
        created_at: when(&d.created_at),
        last_attempt: d
            .attempts
            .first()
            .map_or_else(|| "never".to_string(), |a| when(&a.attempted_at)),
        next_attempt: d.next_attempt_at.as_deref().map(when).unwrap_or_default(),
    }
}

pub async fn redeliver_webhook(
    Path((org, id, delivery)): Path<(String, String, String)>,
    Posted { ctx, .. }: Posted<Nothing>,
) -> Page {
    ctx.api
        .post::<WebhookDelivery>(
            &format!("/organizations/{org}/webhooks/{id}/deliveries/{delivery}/redeliver"),
            &json!({}),
        )
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(see_other(&format!(
        "{}/{id}/deliveries?notice=redelivered",
        list_path(&org)
    )))
}
