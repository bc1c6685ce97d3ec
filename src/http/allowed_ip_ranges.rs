//! `/organizations/{org}/allowed-ip-address-ranges`: the organization's
//! allowlist, Astro's five endpoints (list, create, bulk create, bulk
//! delete, delete). What the list enforces is in `auth` (management
//! requests) and `allowlist` (parsing, membership, the cache).
//!
//! Every change is refused with a 400, unless `?force=true`, when the
//! list it leaves would not allow the caller's own address: one call
//! cannot lock its caller out. The store decides this inside the change's
//! transaction ([`LockOutGuard`]), so two concurrent changes cannot
//! together do what neither may alone. Root is exempt from the list, so
//! its changes are not checked (it is how an operator repairs a bad list).

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::audit::{Origin, Target};
use super::auth::Caller;
use super::client_ip::ClientIp;
use super::error::ApiError;
use super::extract::{ListQuery, PathParams, QueryParams, Sortable, ValidJson};
use super::schema::BasicSubjectProfile;
use crate::allowlist::{parse_range, MAX_RANGES_PER_ORGANIZATION, MAX_RANGES_PER_REQUEST};
use crate::app::AppState;
use crate::authz::Action;
use crate::clock::rfc3339;
use crate::http::request::FieldError;
use crate::model::{AllowedIpRange, AuditAction, TargetKind};
use crate::store::revocations::Revocation;
use crate::store::{LockOutGuard, SortColumn, StoreError};
use crate::token::id::is_id;
use crate::token::id::new_ordered_id;
use crate::verify::Principal;

/// Astro's `AllowedIpAddressRange`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedIpAddressRange {
    pub id: String,
    pub organization_id: String,
    /// A CIDR block in normalised form, e.g. `10.0.0.0/8`, `2001:db8::/32`.
    pub ip_address_range: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    pub created_by: BasicSubjectProfile,
    pub updated_by: BasicSubjectProfile,
}

impl From<&AllowedIpRange> for AllowedIpAddressRange {
    fn from(r: &AllowedIpRange) -> Self {
        AllowedIpAddressRange {
            id: r.id.clone(),
            organization_id: r.organization_id.clone(),
            ip_address_range: r.ip_address_range.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
            created_by: (&r.created_by).into(),
            updated_by: (&r.updated_by).into(),
        }
    }
}

/// Astro's `AllowedIpAddressRangesPaginated`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedIpAddressRangesPaginated {
    pub allowed_ip_address_ranges: Vec<AllowedIpAddressRange>,
    pub limit: i64,
    pub offset: i64,
    pub total_count: i64,
}

/// Astro's `CreateAllowedIpAddressRangeRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateAllowedIpAddressRangeRequest {
    /// A CIDR block in normalised form (no bits set past the prefix).
    #[schema(value_type = String, min_length = 1)]
    pub ip_address_range: Option<String>,
}

/// Astro's `BulkCreateAllowedIpAddressRangesRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkCreateAllowedIpAddressRangesRequest {
    /// 1 to 1,000 CIDR blocks, each in normalised form, none repeated.
    #[schema(value_type = Vec<String>, min_items = 1, max_items = 1000)]
    pub allowed_ip_address_ranges: Option<Vec<String>>,
}

/// The answer to a bulk create: every range added.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedIpAddressRanges {
    pub allowed_ip_address_ranges: Vec<AllowedIpAddressRange>,
}

/// Astro's `BulkDeleteAllowedIpAddressRangesRequest`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkDeleteAllowedIpAddressRangesRequest {
    /// Up to 1,000 ids; unknown and repeated ids are passed over.
    #[schema(value_type = Vec<String>, max_items = 1000)]
    pub allowed_ip_address_range_ids: Option<Vec<String>>,
}

/// `?force=true` on a change: make it even if it leaves the caller's own
/// address outside the list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForceQuery {
    /// Make the change even though it locks the caller out.
    pub force: Option<bool>,
}

impl Sortable for AllowedIpAddressRange {
    const SORT_FIELDS: &'static [(&'static str, SortColumn)] = &[
        ("createdAt", SortColumn::CreatedAt),
        ("ipAddress", SortColumn::IpAddressRange),
        ("updatedAt", SortColumn::UpdatedAt),
    ];
}

/// List the organization's allowed IP address ranges.
///
/// Without `sorts`, ranges come in the order they were added, ties broken
/// by id. `ipAddress` sorts by the range's text, byte by byte.
#[utoipa::path(get, path = "/organizations/{organizationId}/allowed-ip-address-ranges",
    tag = "Allowed IP Address Range", operation_id = "ListAllowedIpAddressRanges",
    params(("organizationId" = String, Path), ListQuery<AllowedIpAddressRange>),
    responses((status = 200, description = "A page of the allowlist", body = AllowedIpAddressRangesPaginated)))]
pub async fn list_allowed_ip_address_ranges(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(org): PathParams<String>,
    query: ListQuery<AllowedIpAddressRange>,
) -> Result<Json<AllowedIpAddressRangesPaginated>, ApiError> {
    caller
        .organization(&state, Action::GetAllowedIpRanges, &org)
        .await?;
    let page = state
        .store
        .list_allowed_ip_ranges(&org, &query.page)
        .await?;
    Ok(Json(AllowedIpAddressRangesPaginated {
        allowed_ip_address_ranges: page.items.iter().map(Into::into).collect(),
        limit: query.page.limit,
        offset: query.page.offset,
        total_count: page.total,
    }))
}

/// Add one range to the organization's allowlist.
#[utoipa::path(post, path = "/organizations/{organizationId}/allowed-ip-address-ranges",
    tag = "Allowed IP Address Range", operation_id = "CreateAllowedIpAddressRange",
    params(("organizationId" = String, Path), ForceQuery),
    request_body = CreateAllowedIpAddressRangeRequest,
    responses((status = 200, description = "The new range", body = AllowedIpAddressRange),
              (status = 400, description = "Not a normalised CIDR block, the list is full, or the change would lock the caller out", body = super::error::ErrorBody),
              (status = 409, description = "The range is already in the list", body = super::error::ErrorBody)))]
pub async fn create_allowed_ip_address_range(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    ClientIp(client): ClientIp,
    PathParams(org): PathParams<String>,
    QueryParams(force): QueryParams<ForceQuery>,
    ValidJson(request): ValidJson<CreateAllowedIpAddressRangeRequest>,
) -> Result<Json<AllowedIpAddressRange>, ApiError> {
    caller.require(
        Action::CreateAllowedIpRange,
        crate::authz::Resource::Inside(&org),
    )?;
    let field = "ipAddressRange";
    let Some(text) = request.ip_address_range else {
        return Err(ApiError::invalid(vec![FieldError::new(
            field,
            "required",
            "ipAddressRange is required: a CIDR block such as 10.0.0.0/8",
        )]));
    };
    let range = parse_range(&text)
        .map_err(|message| ApiError::invalid(vec![FieldError::new(field, "invalid", message)]))?;
    let mut added = add(
        &state,
        &caller,
        &origin,
        client,
        &org,
        vec![range.to_string()],
        &force,
    )
    .await?;
    Ok(Json((&added.remove(0)).into()))
}

/// Add several ranges at once: all of them or, when one is invalid or
/// already in the list, none.
#[utoipa::path(post, path = "/organizations/{organizationId}/allowed-ip-address-ranges/bulk-create",
    tag = "Allowed IP Address Range", operation_id = "BulkCreateAllowedIpAddressRanges",
    params(("organizationId" = String, Path), ForceQuery),
    request_body = BulkCreateAllowedIpAddressRangesRequest,
    responses((status = 200, description = "Every range added", body = AllowedIpAddressRanges),
              (status = 400, description = "An entry is not a normalised CIDR block or is repeated, the list would be too long, or the change would lock the caller out; nothing is added", body = super::error::ErrorBody),
              (status = 409, description = "Ranges already in the list (named); nothing is added", body = super::error::ErrorBody)))]
pub async fn bulk_create_allowed_ip_address_ranges(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    ClientIp(client): ClientIp,
    PathParams(org): PathParams<String>,
    QueryParams(force): QueryParams<ForceQuery>,
    ValidJson(request): ValidJson<BulkCreateAllowedIpAddressRangesRequest>,
) -> Result<Json<AllowedIpAddressRanges>, ApiError> {
    caller.require(
        Action::CreateAllowedIpRange,
        crate::authz::Resource::Inside(&org),
    )?;
    let field = "allowedIpAddressRanges";
    let texts = request.allowed_ip_address_ranges.unwrap_or_default();
    if texts.is_empty() || texts.len() > MAX_RANGES_PER_REQUEST {
        return Err(ApiError::invalid(vec![FieldError::new(
            field,
            "invalid",
            format!("allowedIpAddressRanges must hold 1 to {MAX_RANGES_PER_REQUEST} CIDR blocks"),
        )]));
    }
    let mut errors = Vec::new();
    let mut ranges: Vec<String> = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        match parse_range(text) {
            Ok(net) if ranges.contains(&net.to_string()) => errors.push(FieldError::new(
                &format!("{field}[{i}]"),
                "duplicate",
                format!("{text:?} appears more than once"),
            )),
            Ok(net) => ranges.push(net.to_string()),
            Err(message) => errors.push(FieldError::new(
                &format!("{field}[{i}]"),
                "invalid",
                message,
            )),
        }
    }
    if !errors.is_empty() {
        errors.truncate(super::extract::MAX_FIELD_ERRORS);
        return Err(ApiError::invalid(errors));
    }
    let added = add(&state, &caller, &origin, client, &org, ranges, &force).await?;
    Ok(Json(AllowedIpAddressRanges {
        allowed_ip_address_ranges: added.iter().map(Into::into).collect(),
    }))
}

/// Adds `ranges` (parsed, distinct) to the organization's list, all or
/// none, once the caller may and would not lock itself out.
async fn add(
    state: &AppState,
    caller: &Caller,
    origin: &Origin,
    client: Option<IpAddr>,
    org: &str,
    ranges: Vec<String>,
    force: &ForceQuery,
) -> Result<Vec<AllowedIpRange>, ApiError> {
    caller
        .organization(state, Action::CreateAllowedIpRange, org)
        .await?;
    let guard = lock_out_guard(caller, client, force);
    let now = state.clock.now();
    let actor = caller.0.subject();
    let records: Vec<AllowedIpRange> = ranges
        .into_iter()
        .map(|ip_address_range| AllowedIpRange {
            // Ordered ids: a bulk's ranges share `createdAt`, and the
            // list breaks that tie by id, so they list in the order sent.
            id: new_ordered_id(),
            organization_id: org.to_string(),
            ip_address_range,
            created_at: now,
            updated_at: now,
            created_by: actor.clone(),
            updated_by: actor.clone(),
        })
        .collect();
    let events: Vec<_> = records
        .iter()
        .map(|r| {
            origin.event(
                actor.clone(),
                Some(org),
                AuditAction::AllowedIpRangeCreate,
                Target(TargetKind::AllowedIpRange, &r.id),
                now,
            )
        })
        .collect();
    let stored = records.clone();
    state
        .revoking(Revocation::AllowList(org.to_string()), |store| async move {
            store
                .create_allowed_ip_ranges(&stored, MAX_RANGES_PER_ORGANIZATION, guard, &events)
                .await
                .map(Some)
        })
        .await
        .map_err(|err| refusal(err, client))?;
    tracing::info!(organization_id = %org, added = records.len(), "allowed IP address ranges added");
    Ok(records)
}

/// Delete several ranges at once, all in one step. Unknown and repeated
/// ids are passed over.
#[utoipa::path(post, path = "/organizations/{organizationId}/allowed-ip-address-ranges/bulk-delete",
    tag = "Allowed IP Address Range", operation_id = "BulkDeleteAllowedIpAddressRanges",
    params(("organizationId" = String, Path), ForceQuery),
    request_body = BulkDeleteAllowedIpAddressRangesRequest,
    responses((status = 204, description = "Deleted"),
              (status = 400, description = "No list of ids, too many, or the change would lock the caller out; nothing is deleted", body = super::error::ErrorBody)))]
pub async fn bulk_delete_allowed_ip_address_ranges(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    ClientIp(client): ClientIp,
    PathParams(org): PathParams<String>,
    QueryParams(force): QueryParams<ForceQuery>,
    ValidJson(request): ValidJson<BulkDeleteAllowedIpAddressRangesRequest>,
) -> Result<StatusCode, ApiError> {
    caller.require(
        Action::DeleteAllowedIpRange,
        crate::authz::Resource::Inside(&org),
    )?;
    let Some(ids) = request.allowed_ip_address_range_ids else {
        return Err(ApiError::invalid(vec![FieldError::new(
            "allowedIpAddressRangeIds",
            "required",
            "allowedIpAddressRangeIds is required: a list of range ids",
        )]));
    };
    if ids.len() > MAX_RANGES_PER_REQUEST {
        return Err(ApiError::invalid(vec![FieldError::new(
            "allowedIpAddressRangeIds",
            "invalid",
            format!("allowedIpAddressRangeIds holds at most {MAX_RANGES_PER_REQUEST} ids"),
        )]));
    }
    remove(&state, &caller, &origin, client, &org, ids, &force).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete one range. A second delete of it is a 404.
#[utoipa::path(delete, path = "/organizations/{organizationId}/allowed-ip-address-ranges/{allowedIpAddressRangeId}",
    tag = "Allowed IP Address Range", operation_id = "DeleteAllowedIpAddressRange",
    params(("organizationId" = String, Path), ("allowedIpAddressRangeId" = String, Path), ForceQuery),
    responses((status = 204, description = "Deleted"),
              (status = 400, description = "The change would lock the caller out", body = super::error::ErrorBody),
              (status = 404, description = "No such range in this organization", body = super::error::ErrorBody)))]
pub async fn delete_allowed_ip_address_range(
    State(state): State<AppState>,
    caller: Caller,
    origin: Origin,
    ClientIp(client): ClientIp,
    PathParams((org, id)): PathParams<(String, String)>,
    QueryParams(force): QueryParams<ForceQuery>,
) -> Result<StatusCode, ApiError> {
    let deleted = remove(&state, &caller, &origin, client, &org, vec![id], &force).await?;
    if deleted == 0 {
        return Err(ApiError::not_found("allowed IP address range"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes those of `ids` that are the organization's ranges, once the
/// caller may and would not lock itself out; answers how many it deleted.
async fn remove(
    state: &AppState,
    caller: &Caller,
    origin: &Origin,
    client: Option<IpAddr>,
    org: &str,
    ids: Vec<String>,
    force: &ForceQuery,
) -> Result<usize, ApiError> {
    caller
        .organization(state, Action::DeleteAllowedIpRange, org)
        .await?;
    let ids: Vec<String> = ids.into_iter().filter(|id| is_id(id)).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let guard = lock_out_guard(caller, client, force);
    let audit = origin.event(
        caller.0.subject(),
        Some(org),
        AuditAction::AllowedIpRangeDelete,
        Target(TargetKind::AllowedIpRange, ""),
        state.clock.now(),
    );
    let o = org.to_string();
    let deleted = state
        .revoking(Revocation::AllowList(org.to_string()), |store| async move {
            let deleted = store
                .delete_allowed_ip_ranges(&o, &ids, guard, &audit)
                .await?;
            Ok((!deleted.is_empty()).then_some(deleted.len()))
        })
        .await
        .map_err(|err| refusal(err, client))?
        .unwrap_or(0);
    tracing::info!(organization_id = %org, deleted, "allowed IP address ranges deleted");
    Ok(deleted)
}

/// What a change must leave allowed: the caller's own address, unless the
/// caller is root (exempt from the list) or sent `?force=true`. The store
/// checks it in the change's transaction, so concurrent changes cannot
/// together shut the caller out.
fn lock_out_guard(caller: &Caller, client: Option<IpAddr>, force: &ForceQuery) -> LockOutGuard {
    if matches!(caller.0, Principal::Root { .. }) || force.force == Some(true) {
        LockOutGuard::Off
    } else {
        LockOutGuard::Keep(client)
    }
}

/// A store failure as the answer; a lock-out explains itself.
fn refusal(err: StoreError, client: Option<IpAddr>) -> ApiError {
    let StoreError::WouldLockOut = err else {
        return err.into();
    };
    let address = client.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    ApiError::bad_request(format!(
        "this change would lock you out: your address ({address}) would be outside every \
         allowed IP address range of the organization, and your next request would be refused; \
         include a range that covers it, or repeat the request with ?force=true \
         (the root credential can always repair the list)"
    ))
}
