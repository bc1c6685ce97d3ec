//! An organization's allowed IP address ranges: the list, a form to add
//! one, a button to delete each. Both changes go through the API, so its
//! lock-out protection answers here too: the page shows the address the
//! console sees, and a "force" box to make the change anyway.

use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::http::allowed_ip_ranges::{AllowedIpAddressRange, AllowedIpAddressRangesPaginated};

#[derive(Deserialize, Default)]
pub struct RangeForm {
    #[serde(default, rename = "ipAddressRange")]
    range: String,
    /// A checked box sends `on`.
    #[serde(default)]
    force: String,
}

fn force_query(force: &str) -> &'static str {
    if force == "on" {
        "?force=true"
    } else {
        ""
    }
}

pub async fn allow_list(
    ctx: Ctx,
    ClientOf(client): ClientOf,
    Path(org): Path<String>,
    Q(query): Q<NoticeQuery>,
) -> Page {
    let notice = notice(query.notice.as_deref());
    allow_list_page(&ctx, client, &org, FormState::default(), notice).await
}

async fn allow_list_page(
    ctx: &Ctx,
    client: Option<std::net::IpAddr>,
    org: &str,
    form: FormState,
    notice: Option<String>,
) -> Page {
    let status = failed_status(&form);
    let organization = ctx.organization(org).await?;
    let list: AllowedIpAddressRangesPaginated = ctx
        .read(&format!(
            "/organizations/{org}/allowed-ip-address-ranges?limit=1000"
        ))
        .await?;
    let mut layout = layout(
        ctx,
        "Allowed IP address ranges",
        vec![home_link(), org_link(&organization)],
    );
    layout.notice = notice;
    let on = Resource::Organization(org);
    Ok(render(
        AllowListPage {
            layout,
            may_create: may(ctx, Action::CreateAllowedIpRange, on),
            may_delete: may(ctx, Action::DeleteAllowedIpRange, on),
            org: organization,
            ranges: list.allowed_ip_address_ranges,
            client: client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string()),
            form,
        },
        status,
    ))
}

pub async fn add_allowed_range(
    ClientOf(client): ClientOf,
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<RangeForm>,
) -> Page {
    let added = ctx
        .api
        .post::<AllowedIpAddressRange>(
            &format!(
                "/organizations/{org}/allowed-ip-address-ranges{}",
                force_query(&form.force)
            ),
            &json!({ "ipAddressRange": form.range.trim() }),
        )
        .await;
    match added {
        Ok(_) => Ok(see_other(&format!(
            "/console/organizations/{org}/allowed-ip-address-ranges?notice=range-added"
        ))),
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::CONFLICT => {
            let values = [("ipAddressRange", form.range.as_str())];
            allow_list_page(&ctx, client, &org, form_state(&values, Some(e)), None).await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

#[derive(Deserialize, Default)]
pub struct ForceForm {
    #[serde(default)]
    force: String,
}

pub async fn delete_allowed_range(
    ClientOf(client): ClientOf,
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<ForceForm>,
) -> Page {
    let deleted = ctx
        .api
        .delete(&format!(
            "/organizations/{org}/allowed-ip-address-ranges/{id}{}",
            force_query(&form.force)
        ))
        .await;
    match deleted {
        Ok(()) => Ok(see_other(&format!(
            "/console/organizations/{org}/allowed-ip-address-ranges?notice=range-deleted"
        ))),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            allow_list_page(&ctx, client, &org, form_state(&[], Some(e)), None).await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}
