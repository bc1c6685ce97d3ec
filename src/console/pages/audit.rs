//! An organization's audit log, newest first, filtered and paged.

use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;

use super::*;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    limit: Option<i64>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    offset: i64,
}

pub async fn audit_logs(ctx: Ctx, Path(org): Path<String>, Q(query): Q<AuditQuery>) -> Page {
    let organization = ctx.organization(&org).await?;
    let offset = query.offset.max(0);
    let limit = page_size(query.limit);
    let mut filter = BTreeMap::new();
    let mut params = String::new();
    for (field, api_field, value) in [
        ("action", "action", &query.action),
        ("from", "startDate", &query.from),
        ("until", "endDate", &query.until),
    ] {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        filter.insert(field.to_string(), value.to_string());
        // A browser's datetime-local has no zone and maybe no seconds.
        let value = match field {
            "action" => value.to_string(),
            _ if value.len() == 16 => format!("{value}:00Z"),
            _ => format!("{value}Z"),
        };
        params.push_str(&format!("&{api_field}={}", urlencode(&value)));
    }
    let shown = format!(
        "&action={}&from={}&until={}",
        urlencode(&query.action),
        urlencode(&query.from),
        urlencode(&query.until)
    );
    let here = format!("/console/organizations/{org}/audit-logs");
    let listed = ctx
        .api
        .get::<AuditLogsPaginated>(&format!(
            "/organizations/{org}/audit-logs?sorts=createdAt:desc&offset={offset}&limit={limit}{params}"
        ))
        .await;
    let mut form = FormState {
        values: filter,
        ..FormState::default()
    };
    let (events, total, status) = match listed {
        Ok(page) => (page.audit_logs, page.total_count, StatusCode::OK),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            for field in &e.field_errors {
                let name = match field.field.as_str() {
                    "startDate" => "from",
                    "endDate" => "until",
                    other => other,
                };
                let message = match name {
                    "from" => "From must be a date and time.",
                    "until" => "Until must be a date and time, not before From.",
                    _ => "Choose an action from the list.",
                };
                form.errors.insert(name.to_string(), message.to_string());
            }
            (Vec::new(), 0, StatusCode::BAD_REQUEST)
        }
        Err(e) => return Err(error_page(&ctx, e)),
    };
    let pager = pager(offset, limit, events.len(), total, |o| {
        format!("{here}?offset={o}&limit={limit}{shown}")
    });
    Ok(render(
        AuditPage {
            layout: layout(
                &ctx,
                "Audit log",
                vec![home_link(), org_link(&organization)],
            ),
            org: organization,
            events,
            actions: crate::model::AuditAction::ALL.map(|a| a.as_str()),
            pager,
            form,
        },
        status,
    ))
}
