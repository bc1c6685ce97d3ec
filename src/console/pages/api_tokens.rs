//! An organization's API tokens: list, create with roles, rename, change
//! roles, rotate and delete.

use axum::extract::Path;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::*;

/// The roles and places an API-token form offers: only roles this
/// credential may confer somewhere it can see.
async fn role_choices(ctx: &Ctx, org: &str) -> (Vec<Choice>, Vec<Choice>) {
    let workspaces = ctx.workspaces(org).await;
    let deployments = ctx.deployments(org).await;
    let mut places = vec![(
        format!("ORGANIZATION:{org}"),
        "the organization".to_string(),
        Resource::Organization(org),
    )];
    places.extend(workspaces.iter().map(|w| {
        (
            format!("WORKSPACE:{}", w.id),
            format!("workspace {}", w.name),
            Resource::Workspace {
                organization: org,
                workspace: &w.id,
            },
        )
    }));
    places.extend(deployments.iter().map(|d| {
        (
            format!("DEPLOYMENT:{}", d.id),
            format!("deployment {}", d.name),
            Resource::Deployment {
                organization: org,
                workspace: &d.workspace_id,
                deployment: &d.id,
            },
        )
    }));
    let roles = Role::ALL
        .into_iter()
        .filter(|role| {
            places
                .iter()
                .any(|(_, _, on)| authz::may_confer(&ctx.user.principal, *role, *on).is_ok())
        })
        .map(|role| Choice {
            value: role.as_str().to_string(),
            label: role.as_str().to_string(),
        })
        .collect();
    let entities = places
        .into_iter()
        .map(|(value, label, _)| Choice { value, label })
        .collect();
    (roles, entities)
}

pub async fn api_tokens(ctx: Ctx, Path(org): Path<String>, Q(query): Q<ListQuery>) -> Page {
    let notice = notice(query.notice.as_deref());
    let limit = page_size(query.limit);
    api_tokens_page(
        &ctx,
        &org,
        (query.offset, limit),
        FormState::default(),
        notice,
    )
    .await
}

async fn api_tokens_page(
    ctx: &Ctx,
    org: &str,
    (offset, limit): (i64, i64),
    form: FormState,
    notice: Option<String>,
) -> Page {
    let status = failed_status(&form);
    let organization = ctx.organization(org).await?;
    let offset = offset.max(0);
    let list: ApiTokensPaginated = ctx
        .read(&format!(
            "/organizations/{org}/tokens?offset={offset}&limit={limit}"
        ))
        .await?;
    let here = format!("/console/organizations/{org}/api-tokens");
    let pager = pager(offset, limit, list.tokens.len(), list.total_count, |o| {
        format!("{here}?offset={o}&limit={limit}")
    });
    let (roles, entities) = role_choices(ctx, org).await;
    let tokens = list
        .tokens
        .into_iter()
        .map(|token| ApiTokenRow {
            roles: roles_text(&token),
            expires: token.end_at.as_deref().map_or("never".to_string(), when),
            token,
        })
        .collect();
    let mut layout = layout(
        ctx,
        "API tokens",
        vec![home_link(), org_link(&organization)],
    );
    layout.notice = notice;
    Ok(render(
        ApiTokensPage {
            layout,
            may_create: !roles.is_empty(),
            org: organization,
            tokens,
            pager,
            roles,
            entities,
            nonce: nonce(ctx),
            form,
        },
        status,
    ))
}

fn roles_text(token: &ApiToken) -> String {
    token
        .roles
        .iter()
        .flatten()
        .map(|r| {
            format!(
                "{} on {} {}",
                r.role,
                r.entity_type.to_lowercase(),
                r.entity_id
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Deserialize, Default)]
pub struct ApiTokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    role: String,
    /// `KIND:id` of the entity the role is held on.
    #[serde(default)]
    entity: String,
    #[serde(default, rename = "tokenExpiryPeriodInDays")]
    expiry_days: String,
    #[serde(default)]
    nonce: String,
}

/// `ORGANIZATION:id` → (`ORGANIZATION`, `id`).
fn split_entity(entity: &str) -> (&str, &str) {
    entity.split_once(':').unwrap_or(("", ""))
}

pub async fn create_api_token(
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<ApiTokenForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/api-tokens");
    spend_nonce(&ctx, &form.nonce, &here).await?;
    let created = async {
        let days = number(
            "tokenExpiryPeriodInDays",
            &form.expiry_days,
            "Expires in (days)",
        )?;
        let (scope, entity_id) = split_entity(&form.entity);
        let body = json!({
            "name": form.name,
            "description": form.description,
            "role": form.role,
            "scope": scope,
            "entityId": entity_id,
            "tokenExpiryPeriodInDays": days,
        });
        ctx.api
            .post::<ApiToken>(&format!("/organizations/{org}/tokens"), &body)
            .await
    };
    match created.await {
        Ok(token) => Ok(secret_page(
            &ctx,
            "API token created",
            token,
            &here,
            "Back to the API tokens",
        )),
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::FORBIDDEN => {
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
                ("role", &form.role),
                ("entity", &form.entity),
                ("tokenExpiryPeriodInDays", &form.expiry_days),
            ];
            api_tokens_page(
                &ctx,
                &org,
                (0, PAGE_SIZE),
                form_state(&values, Some(e)),
                None,
            )
            .await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

pub async fn api_token(
    ctx: Ctx,
    Path((org, id)): Path<(String, String)>,
    Q(query): Q<NoticeQuery>,
) -> Page {
    let notice = notice(query.notice.as_deref());
    api_token_page(&ctx, &org, &id, None, None, notice).await
}

async fn api_token_page(
    ctx: &Ctx,
    org: &str,
    id: &str,
    form: Option<FormState>,
    roles_form: Option<FormState>,
    notice: Option<String>,
) -> Page {
    let organization = ctx.organization(org).await?;
    let token: ApiToken = ctx
        .read(&format!("/organizations/{org}/tokens/{id}"))
        .await?;
    let failed = form
        .as_ref()
        .or(roles_form.as_ref())
        .is_some_and(|f| !f.errors.is_empty() || f.message.is_some());
    let form = form.unwrap_or_else(|| {
        form_state(
            &[("name", &token.name), ("description", &token.description)],
            None,
        )
    });
    let first_role = token.roles.iter().flatten().next();
    let roles_form = roles_form.unwrap_or_else(|| {
        let entity = first_role
            .map(|r| format!("{}:{}", r.entity_type, r.entity_id))
            .unwrap_or_default();
        let role = first_role.map(|r| r.role.clone()).unwrap_or_default();
        form_state(&[("role", &role), ("entity", &entity)], None)
    });
    let (role_choices, entities) = role_choices(ctx, org).await;
    // The token's own place, as `authz` sees API tokens: the organization.
    let on = Resource::Organization(org);
    let mut layout = layout(
        ctx,
        token.name.clone(),
        vec![
            home_link(),
            org_link(&organization),
            (
                format!("/console/organizations/{org}/api-tokens"),
                "API tokens".to_string(),
            ),
        ],
    );
    layout.notice = notice;
    Ok(render(
        ApiTokenPage {
            layout,
            roles: roles_text(&token),
            may_update: may(ctx, Action::UpdateApiToken, on),
            may_rotate: may(ctx, Action::RotateApiToken, on),
            may_delete: may(ctx, Action::DeleteApiToken, on),
            org: organization,
            token,
            role_choices,
            entities,
            nonce: nonce(ctx),
            form,
            roles_form,
        },
        if failed {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
    ))
}

pub async fn update_api_token(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({ "name": form.name, "description": form.description });
    match ctx
        .api
        .post::<ApiToken>(&format!("/organizations/{org}/tokens/{id}"), &body)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/organizations/{org}/api-tokens/{id}?notice=saved"
        ))),
        Err(e) if e.status == StatusCode::BAD_REQUEST => {
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
            ];
            api_token_page(
                &ctx,
                &org,
                &id,
                Some(form_state(&values, Some(e))),
                None,
                None,
            )
            .await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

#[derive(Deserialize, Default)]
pub struct RolesForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    entity: String,
}

pub async fn update_api_token_roles(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<RolesForm>,
) -> Page {
    let (entity_type, entity_id) = split_entity(&form.entity);
    let body = json!({ "roles": [{
        "role": form.role, "entityType": entity_type, "entityId": entity_id,
    }] });
    match ctx
        .api
        .post::<serde_json::Value>(&format!("/organizations/{org}/tokens/{id}/roles"), &body)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/organizations/{org}/api-tokens/{id}?notice=saved"
        ))),
        Err(e) if e.status == StatusCode::BAD_REQUEST || e.status == StatusCode::FORBIDDEN => {
            let values = [("role", form.role.as_str()), ("entity", &form.entity)];
            api_token_page(
                &ctx,
                &org,
                &id,
                None,
                Some(form_state(&values, Some(e))),
                None,
            )
            .await
        }
        Err(e) => Err(error_page(&ctx, e)),
    }
}

#[derive(Deserialize, Default)]
pub struct NonceForm {
    #[serde(default)]
    pub(super) nonce: String,
}

pub async fn rotate_api_token(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted<NonceForm>,
) -> Page {
    let here = format!("/console/organizations/{org}/api-tokens/{id}");
    spend_nonce(&ctx, &form.nonce, &here).await?;
    let token = ctx
        .api
        .post::<ApiToken>(
            &format!("/organizations/{org}/tokens/{id}/rotate"),
            &json!({}),
        )
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(secret_page(
        &ctx,
        "API token rotated",
        token,
        &here,
        "Back to the API token",
    ))
}

pub async fn delete_api_token_form(ctx: Ctx, Path((org, id)): Path<(String, String)>) -> Page {
    let token: ApiToken = ctx
        .read(&format!("/organizations/{org}/tokens/{id}"))
        .await?;
    let back = format!("/console/organizations/{org}/api-tokens/{id}");
    Ok(render(
        ConfirmPage {
            layout: layout(
                &ctx,
                "Delete API token",
                vec![home_link(), (back.clone(), token.name.clone())],
            ),
            question: format!("Delete the API token {}?", token.name),
            consequence: format!(
                "Whatever uses {} (…{}) will be refused from the next request on, and console \
                 sessions signed in with it end. This cannot be undone.",
                token.name, token.short_token
            ),
            action: format!("{back}/delete"),
            button: "Delete".into(),
            danger: true,
            nonce: None,
            back,
        },
        StatusCode::OK,
    ))
}

pub async fn delete_api_token(
    Path((org, id)): Path<(String, String)>,
    Posted { ctx, .. }: Posted<Nothing>,
) -> Page {
    ctx.api
        .delete(&format!("/organizations/{org}/tokens/{id}"))
        .await
        .map_err(|e| error_page(&ctx, e))?;
    Ok(see_other(&format!(
        "/console/organizations/{org}/api-tokens?notice=deleted"
    )))
}
