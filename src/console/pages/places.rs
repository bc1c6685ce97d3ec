//! Organizations, workspaces and deployments: the pages that list,
//! create and edit them.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::*;

pub async fn home(ctx: Ctx) -> Page {
    home_page(&ctx, FormState::default(), StatusCode::OK).await
}

async fn home_page(ctx: &Ctx, form: FormState, status: StatusCode) -> Page {
    let orgs: OrganizationsPaginated = ctx
        .read(&format!("/organizations?{LIST_ALL}&sorts=name:asc"))
        .await?;
    Ok(render(
        HomePage {
            layout: layout(ctx, "Organizations", Vec::new()),
            organizations: orgs.organizations,
            may_create: may(ctx, Action::CreateOrganization, Resource::Global),
            form,
        },
        status,
    ))
}

#[derive(Deserialize, Default)]
pub struct NameForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default, rename = "workspaceId")]
    pub workspace_id: String,
}

pub async fn create_organization(Posted { ctx, form }: Posted<NameForm>) -> Page {
    match ctx
        .api
        .post::<Organization>("/organizations", &json!({ "name": form.name }))
        .await
    {
        Ok(org) => Ok(see_other(&format!(
            "/console/organizations/{}?notice=created",
            org.id
        ))),
        Err(e) => {
            let status = e.status;
            home_page(&ctx, form_state(&[("name", &form.name)], Some(e)), status).await
        }
    }
}

pub async fn organization(ctx: Ctx, Path(org): Path<String>, Q(query): Q<NoticeQuery>) -> Page {
    let mut page =
        organization_page(&ctx, &org, FormState::default(), FormState::default()).await?;
    page.layout.notice = notice(query.notice.as_deref());
    Ok(render(page, StatusCode::OK))
}

async fn organization_page(
    ctx: &Ctx,
    org: &str,
    workspace_form: FormState,
    deployment_form: FormState,
) -> Result<OrganizationPage, Response> {
    let organization = ctx.organization(org).await?;
    // What the caller may not list is shown as empty, as the API answers.
    let workspaces = ctx.workspaces(org).await;
    let deployments = ctx.deployments(org).await;
    let deployable = workspaces
        .iter()
        .filter(|w| {
            may(
                ctx,
                Action::CreateDeployment,
                Resource::Workspace {
                    organization: org,
                    workspace: &w.id,
                },
            )
        })
        .cloned()
        .collect();
    Ok(OrganizationPage {
        layout: layout(ctx, organization.name.clone(), vec![home_link()]),
        may_create_workspace: may(ctx, Action::CreateWorkspace, Resource::Organization(org)),
        may_see_api_tokens: may(ctx, Action::GetApiTokens, Resource::Organization(org)),
        may_see_audit: may(ctx, Action::ReadAuditLogs, Resource::Organization(org)),
        may_see_allowlist: may(ctx, Action::GetAllowedIpRanges, Resource::Organization(org)),
        may_see_webhooks: may(ctx, Action::GetWebhooks, Resource::Organization(org)),
        org: organization,
        workspaces,
        deployments,
        deployable,
        workspace_form,
        deployment_form,
    })
}

pub async fn create_workspace(
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({ "name": form.name, "description": form.description });
    match ctx
        .api
        .post::<Workspace>(&format!("/organizations/{org}/workspaces"), &body)
        .await
    {
        Ok(ws) => Ok(see_other(&format!(
            "/console/organizations/{org}/workspaces/{}?notice=created",
            ws.id
        ))),
        Err(e) => {
            let status = e.status;
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
            ];
            let page = organization_page(
                &ctx,
                &org,
                form_state(&values, Some(e)),
                FormState::default(),
            )
            .await?;
            Ok(render(page, status))
        }
    }
}

pub async fn workspace(
    ctx: Ctx,
    Path((org, ws)): Path<(String, String)>,
    Q(query): Q<NoticeQuery>,
) -> Page {
    let page = workspace_page(&ctx, &org, &ws, notice(query.notice.as_deref()), None).await?;
    Ok(render(page, StatusCode::OK))
}

/// The edit form of a workspace or deployment as first shown: its own
/// name and description.
pub(super) fn edit_state(name: &str, description: &str) -> FormState {
    form_state(&[("name", name), ("description", description)], None)
}

/// `POST` of the workspace page's edit form: `POST
/// /organizations/{org}/workspaces/{ws}` with the name and description (the
/// CI/CD default is kept).
pub async fn update_workspace(
    Path((org, ws)): Path<(String, String)>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({ "name": form.name, "description": form.description });
    match ctx
        .api
        .post::<Workspace>(&format!("/organizations/{org}/workspaces/{ws}"), &body)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/console/organizations/{org}/workspaces/{ws}?notice=saved"
        ))),
        Err(e) => {
            let status = e.status;
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
            ];
            let page =
                workspace_page(&ctx, &org, &ws, None, Some(form_state(&values, Some(e)))).await?;
            Ok(render(page, status))
        }
    }
}

async fn workspace_page(
    ctx: &Ctx,
    org: &str,
    ws: &str,
    notice: Option<String>,
    edit_form: Option<FormState>,
) -> Result<WorkspacePage, Response> {
    let organization = ctx.organization(org).await?;
    let workspace: Workspace = ctx
        .read(&format!("/organizations/{org}/workspaces/{ws}"))
        .await?;
    // Only this workspace's, which a workspace role may list too.
    let deployments = ctx
        .api
        .get::<DeploymentsPaginated>(&format!(
            "/organizations/{org}/deployments?workspaceIds={ws}&{LIST_ALL}&sorts=name:asc"
        ))
        .await
        .map(|d| d.deployments)
        .unwrap_or_default();
    let mut layout = layout(
        ctx,
        workspace.name.clone(),
        vec![home_link(), org_link(&organization)],
    );
    layout.notice = notice;
    Ok(WorkspacePage {
        layout,
        may_create_deployment: may(
            ctx,
            Action::CreateDeployment,
            Resource::Workspace {
                organization: org,
                workspace: ws,
            },
        ),
        may_edit: may(
            ctx,
            Action::UpdateWorkspace,
            Resource::Workspace {
                organization: org,
                workspace: ws,
            },
        ),
        edit_form: edit_form.unwrap_or_else(|| edit_state(&workspace.name, &workspace.description)),
        org: organization,
        workspace,
        deployments,
        deployment_form: FormState::default(),
    })
}

pub async fn create_deployment(
    Path(org): Path<String>,
    Posted { ctx, form }: Posted<NameForm>,
) -> Page {
    let body = json!({
        "name": form.name,
        "description": form.description,
        "workspaceId": form.workspace_id,
    });
    match ctx
        .api
        .post::<Deployment>(&format!("/organizations/{org}/deployments"), &body)
        .await
    {
        Ok(dep) => Ok(see_other(&format!(
            "/console/organizations/{org}/deployments/{}?notice=created",
            dep.id
        ))),
        Err(e) => {
            let status = e.status;
            let values = [
                ("name", form.name.as_str()),
                ("description", &form.description),
                ("workspaceId", &form.workspace_id),
            ];
            let page = organization_page(
                &ctx,
                &org,
                FormState::default(),
                form_state(&values, Some(e)),
            )
            .await?;
            Ok(render(page, status))
        }
    }
}
