//! A deployment's page and its agent tokens: list, create (the secret
//! shown once), rotate and delete.

use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::*;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    pub offset: i64,
    pub limit: Option<i64>,
    #[serde(default)]
    pub sort: String,
    pub notice: Option<String>,
}

/// The sortable columns of the agent-token table: label and Astro field.
const TOKEN_SORTS: [(&str, &str); 3] = [
    ("Name", "name"),
    ("Description", "description"),
    ("Created", "createdAt"),
];

pub async fn deployment(
    ctx: Ctx,
    Path((org, dep)): Path<(String, String)>,
    Q(query): Q<ListQuery>,
) -> Page {
    let notice = notice(query.notice.as_deref());
    deployment_page(&ctx, &org, &dep, &query, FormState::default(), notice).await
}

/// `POST` of the deployment page's edit form: `POST
/// /organizations/{org}/deployments/{dep}` with the name and description
/// (the rest is kept).
pub async fn update_deployment(
    Path((org, dep)): Path<(String, String)>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({ "name": form.name, "description": form.description });
    match ctx
        .api
        .post::<Deployment>(&format!("/organizations/{org}/deployments/{dep}"), &body)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/organizations/{org}/deployments/{dep}?notice=saved"
        ))),
        Err(e) => {
            let status = e.status;
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
            ];
            let edit = form_state(&values, Some(e));
            let mut page = deployment_page_with(
                &ctx,
                &org,
                &dep,
                &ListQuery::default(),
                FormState::default(),
                None,
                Some(edit),
            )
            .await?;
            *page.status_mut() = status;
            Ok(page)
        }
    }
}

async fn deployment_page(
    ctx: &Ctx,
    org: &str,
    dep: &str,
    query: &ListQuery,
    form: FormState,
    notice: Option<String>,
) -> Page {
    deployment_page_with(ctx, org, dep, query, form, notice, None).await
}

async fn deployment_page_with(
    ctx: &Ctx,
    org: &str,
    dep: &str,
    query: &ListQuery,
    form: FormState,
    notice: Option<String>,
    edit_form: Option<FormState>,
) -> Page {
    let status = failed_status(&form);
    let organization = ctx.organization(org).await?;
    let deployment: Deployment = ctx
        .read(&format!("/organizations/{org}/deployments/{dep}"))
        .await?;
    // Only sorts the table offers are passed on; anything else is ignored.
    let sort = TOKEN_SORTS
        .iter()
        .flat_map(|(_, f)| [format!("{f}:asc"), format!("{f}:desc")])
        .find(|s| *s == query.sort);
    let offset = query.offset.max(0);
    let limit = page_size(query.limit);
    let mut path = format!(
        "/organizations/{org}/deployments/{dep}/agent-tokens?offset={offset}&limit={limit}"
    );
    if let Some(sort) = &sort {
        path.push_str(&format!("&sorts={sort}"));
    }
    let list: ApiTokensPaginated = ctx.api.get(&path).await.map_err(|e| error_page(ctx, e))?;
    let now = ctx.console.state.clock.now();
    let here = format!("/console/organizations/{org}/deployments/{dep}");
    let tokens = list
        .tokens
        .iter()
        .map(|t| agent_token_row(t, now))
        .collect();
    let sorts = TOKEN_SORTS
        .iter()
        .map(|(label, field)| {
            let current = sort.as_deref().and_then(|s| s.strip_prefix(field));
            let (state, next) = match current {
                Some(":asc") => ("ascending", "desc"),
                Some(":desc") => ("descending", "asc"),
                _ => ("none", "asc"),
            };
            SortLink {
                label,
                href: format!("{here}?sort={field}:{next}"),
                state,
            }
        })
        .collect();
    let sort_param = sort.map(|s| format!("&sort={s}")).unwrap_or_default();
    let pager = pager(offset, limit, list.tokens.len(), list.total_count, |o| {
        format!("{here}?offset={o}&limit={limit}{sort_param}")
    });
    let resource = Resource::Deployment {
        organization: org,
        workspace: &deployment.workspace_id,
        deployment: dep,
    };
    let mut layout = layout(
        ctx,
        deployment.name.clone(),
        vec![home_link(), org_link(&organization)],
    );
    layout.notice = notice;
    Ok(render(
        DeploymentPage {
            layout,
            may_create: may(ctx, Action::CreateAgentToken, resource),
            may_rotate: may(ctx, Action::RotateAgentToken, resource),
            may_delete: may(ctx, Action::DeleteAgentToken, resource),
            may_edit: may(ctx, Action::UpdateDeployment, resource),
            edit_form: edit_form
                .unwrap_or_else(|| edit_state(&deployment.name, &deployment.description)),
            org: organization,
            deployment,
            tokens,
            sorts,
            pager,
            nonce: nonce(ctx),
            form,
        },
        status,
    ))
}

fn agent_token_row(t: &ApiToken, now: i64) -> AgentTokenRow {
    let expired = t
        .end_at
        .as_deref()
        .and_then(|end| chrono::DateTime::parse_from_rfc3339(end).ok())
        .is_some_and(|end| end.timestamp() <= now);
    let status = match (&t.previous_secret_valid_until, expired) {
        (_, true) => "Expired".to_string(),
        (Some(until), false) => format!("Active · old secret valid until {}", when(until)),
        (None, false) => "Active".to_string(),
    };
    AgentTokenRow {
        id: t.id.clone(),
        name: t.name.clone(),
        description: t.description.clone(),
        short_token: t.short_token.clone(),
        status,
        expired,
        created_at: when(&t.created_at),
        expires: t.end_at.as_deref().map_or("never".to_string(), when),
        last_used: t.last_used_at.as_deref().map_or("never".to_string(), when),
        networks: t
            .allowed_ip_address_ranges
            .as_ref()
            .map_or("anywhere".to_string(), |ranges| ranges.join(", ")),
    }
}

#[derive(Deserialize, Default)]
pub struct AgentTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "tokenExpiryPeriodInDays")]
    expiry_days: String,
    /// CIDR blocks separated by commas, spaces or new lines.
    #[serde(default, rename = "allowedIpAddressRanges")]
    networks: String,
    #[serde(default)]
    nonce: String,
}

pub async fn create_agent_token(
    Path((org, dep)): Path<(String, String)>,
    Posted { ctx, form }: Posted<AgentTokenForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/deployments/{dep}");
    let values = [
        ("name", form.name.as_str()),
        ("description", &form.description),
        ("tokenExpiryPeriodInDays", &form.expiry_days),
        ("allowedIpAddressRanges", &form.networks),
    ];
    let fail = |e: ApiError| form_state(&values, Some(e));
    spend_nonce(&ctx, &form.nonce, &here).await?;
    let created = async {
        let days = number(
            "tokenExpiryPeriodInDays",
            &form.expiry_days,
            "Expires in (days)",
        )?;
        let networks: Vec<&str> = form
            .networks
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
            .collect();
        let body = json!({
            "name": form.name,
            "description": form.description,
            "tokenExpiryPeriodInDays": days,
            "allowedIpAddressRanges": networks,
        });
        ctx.api
            .post::<ApiToken>(
                &format!("/organizations/{org}/deployments/{dep}/agent-tokens"),
                &body,
            )
            .await
    };
    match created.await {
        Ok(token) => Ok(secret_page(
            &ctx,
            "Agent token created",
            token,
            &here,
            "Back to the deployment",
        )),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            deployment_page(&ctx, &org, &dep, &ListQuery::default(), fail(e), None).await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

pub async fn rotate_agent_token_form(
    ctx: Ctx,
    Path((org, dep, id)): Path<(String, String, String)>,
) -> Page {
    rotate_page(&ctx, &org, &dep, &id, FormState::default()).await
}

async fn rotate_page(ctx: &Ctx, org: &str, dep: &str, id: &str, form: FormState) -> Page {
    let status = failed_status(&form);
    let token: ApiToken = ctx
        .read(&format!(
            "/organizations/{org}/deployments/{dep}/agent-tokens/{id}"
        ))
        .await?;
    let back = format!("/console/organizations/{org}/deployments/{dep}");
    Ok(render(
        RotatePage {
            layout: layout(
                ctx,
                format!("Rotate {}", token.name),
                vec![home_link(), (back.clone(), "Deployment".into())],
            ),
            name: token.name,
            short_token: token.short_token,
            action: format!("{back}/agent-tokens/{id}/rotate"),
            back,
            nonce: nonce(ctx),
            form,
        },
        status,
    ))
}

#[derive(Deserialize, Default)]
pub struct RotateForm {
    #[serde(default, rename = "gracePeriodSeconds")]
    grace: String,
    #[serde(default)]
    nonce: String,
}

pub async fn rotate_agent_token(
    Path((org, dep, id)): Path<(String, String, String)>,
    Posted { ctx, form }: Posted<RotateForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/deployments/{dep}");
    spend_nonce(&ctx, &form.nonce, &here).await?;
    let rotated = async {
        let grace = number("gracePeriodSeconds", &form.grace, "Grace period (seconds)")?;
        ctx.api
            .post::<ApiToken>(
                &format!("/organizations/{org}/deployments/{dep}/agent-tokens/{id}/rotate"),
                &json!({ "gracePeriodSeconds": grace }),
            )
            .await
    };
    match rotated.await {
        Ok(token) => Ok(secret_page(
            &ctx,
            "Agent token rotated",
            token,
            &here,
            "Back to the deployment",
        )),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let state = form_state(&[("gracePeriodSeconds", &form.grace)], Some(e));
            rotate_page(&ctx, &org, &dep, &id, state).await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

pub async fn delete_agent_token_form(
    ctx: Ctx,
    Path((org, dep, id)): Path<(String, String, String)>,
) -> Page {
    let token: ApiToken = ctx
        .read(&format!(
            "/organizations/{org}/deployments/{dep}/agent-tokens/{id}"
        ))
        .await?;
    let back = format!("/console/organizations/{org}/deployments/{dep}");
    Ok(render(
        ConfirmPage {
            layout: layout(
                &ctx,
                "Delete agent token",
                vec![home_link(), (back.clone(), "Deployment".into())],
            ),
            question: format!("Delete the agent token {}?", token.name),
            consequence: format!(
                "The agent that uses {} (…{}) will be refused from the next request on. \
                 This cannot be undone.",
                token.name, token.short_token
            ),
            action: format!("{back}/agent-tokens/{id}/delete"),
            button: "Delete".into(),
            danger: true,
            nonce: None,
            back,
        },
        StatusCode::OK,
    ))
}

pub async fn delete_agent_token(
    Path((org, dep, id)): Path<(String, String, String)>,
    Posted { ctx, .. }: Posted<Nothing>,
) -> Page {
    ctx.api
        .delete(&format!(
            "/organizations/{org}/deployments/{dep}/agent-tokens/{id}"
        ))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(see_other(&format!(
        "/console/organizations/{org}/deployments/{dep}?notice=deleted"
    )))
}
