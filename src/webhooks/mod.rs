//! Signed event webhooks (issue 15): the event types and the one mapping
//! from an audited change to the event it reports ([`EventType::of_audit`]),
//! the event's JSON, the signature, the outgoing-address check and the
//! retry schedule. The store writes events into its outbox in the
//! transaction of the change (`store/webhooks.rs`); [`worker`] delivers
//! them, [`expiry`] emits the expiry warnings and [`retention`] deletes
//! what is older than the retention period.

pub mod expiry;
pub mod guard;
pub mod retention;
pub mod sign;
pub mod worker;

use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::model::{AuditAction, AuditEvent, Subject};

/// Every event a webhook endpoint can receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    AgentTokenCreated,
    AgentTokenRotated,
    AgentTokenDeleted,
    AgentTokenExpiring,
    AgentTokenExpired,
    AgentTokenFirstUsed,
    ApiTokenCreated,
    ApiTokenRotated,
    ApiTokenDeleted,
    ApiTokenExpiring,
    ApiTokenExpired,
    DeploymentDeleted,
    AllowedIpRangeChanged,
}

impl EventType {
    pub const ALL: [EventType; 13] = [
        EventType::AgentTokenCreated,
        EventType::AgentTokenRotated,
        EventType::AgentTokenDeleted,
        EventType::AgentTokenExpiring,
        EventType::AgentTokenExpired,
        EventType::AgentTokenFirstUsed,
        EventType::ApiTokenCreated,
        EventType::ApiTokenRotated,
        EventType::ApiTokenDeleted,
        EventType::ApiTokenExpiring,
        EventType::ApiTokenExpired,
        EventType::DeploymentDeleted,
        EventType::AllowedIpRangeChanged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::AgentTokenCreated => "agent_token.created",
            EventType::AgentTokenRotated => "agent_token.rotated",
            EventType::AgentTokenDeleted => "agent_token.deleted",
            EventType::AgentTokenExpiring => "agent_token.expiring",
            EventType::AgentTokenExpired => "agent_token.expired",
            EventType::AgentTokenFirstUsed => "agent_token.first_used",
            EventType::ApiTokenCreated => "api_token.created",
            EventType::ApiTokenRotated => "api_token.rotated",
            EventType::ApiTokenDeleted => "api_token.deleted",
            EventType::ApiTokenExpiring => "api_token.expiring",
            EventType::ApiTokenExpired => "api_token.expired",
            EventType::DeploymentDeleted => "deployment.deleted",
            EventType::AllowedIpRangeChanged => "allowed_ip_range.changed",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The event an audited change reports, if any: the one mapping from
    /// the audit trail's actions to events. The match names every action,
    /// so a new one cannot be added without deciding what it reports.
    pub fn of_audit(action: &str) -> Option<EventType> {
        use AuditAction as A;
        let action = A::ALL.into_iter().find(|a| a.as_str() == action)?;
        match action {
            A::AgentTokenCreate => Some(EventType::AgentTokenCreated),
            A::AgentTokenRotate => Some(EventType::AgentTokenRotated),
            A::AgentTokenDelete => Some(EventType::AgentTokenDeleted),
            A::ApiTokenCreate => Some(EventType::ApiTokenCreated),
            A::ApiTokenRotate => Some(EventType::ApiTokenRotated),
            A::ApiTokenDelete => Some(EventType::ApiTokenDeleted),
            A::DeploymentDelete => Some(EventType::DeploymentDeleted),
            A::AllowedIpRangeCreate | A::AllowedIpRangeDelete => {
                Some(EventType::AllowedIpRangeChanged)
            }
            // Registry changes, renames and role changes of API tokens,
            // refused requests, the root credential and webhooks themselves
            // report nothing.
            A::OrganizationCreate
            | A::OrganizationUpdate
            | A::WorkspaceCreate
            | A::WorkspaceUpdate
            | A::WorkspaceDelete
            | A::DeploymentCreate
            | A::DeploymentUpdate
            | A::ApiTokenUpdate
            | A::ApiTokenUpdateRoles
            | A::RootCredentialCreate
            | A::RootCredentialRotate
            | A::AllowedIpRangeRefusal
            | A::WebhookCreate
            | A::WebhookRotate
            | A::WebhookDelete
            | A::WebhookRedeliver => None,
        }
    }
}

/// The `event_types` column of an endpoint: `*` for every type, else
/// `,a,b,` so that one `LIKE '%,type,%'` finds the endpoints of a type.
pub fn event_types_column(types: &[EventType]) -> String {
    if types.is_empty() {
        return "*".into();
    }
    let mut out = String::from(",");
    for t in types {
        out.push_str(t.as_str());
        out.push(',');
    }
    out
}

/// The event types an `event_types` column names (empty: every type).
pub fn event_types_of_column(column: &str) -> Vec<EventType> {
    column
        .split(',')
        .filter_map(EventType::parse)
        .collect::<Vec<_>>()
}

/// What an event is about, as it was when the event was written: never a
/// secret, only ids, a name and times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `AGENT_TOKEN`, `API_TOKEN`, `DEPLOYMENT`, `ALLOWED_IP_ADDRESS_RANGE`.
    pub kind: String,
    pub id: String,
    pub name: Option<String>,
    /// An agent token's deployment, an API token's scope entity, a
    /// deployment's workspace.
    pub parent_id: Option<String>,
    pub end_at: Option<i64>,
}

impl Snapshot {
    fn object(&self) -> Value {
        let mut object = json!({ "type": self.kind, "id": self.id });
        let fields = object.as_object_mut().expect("an object");
        if let Some(name) = &self.name {
            fields.insert("name".into(), json!(name));
        }
        // A range's parent is the organization, which the event names.
        let parent_key = match self.kind.as_str() {
            "AGENT_TOKEN" => Some("deploymentId"),
            "API_TOKEN" => Some("entityId"),
            "DEPLOYMENT" => Some("workspaceId"),
            _ => None,
        };
        if let (Some(parent), Some(key)) = (&self.parent_id, parent_key) {
            fields.insert(key.into(), json!(parent));
        }
        if let Some(end) = self.end_at {
            fields.insert("endAt".into(), json!(rfc3339(end)));
        }
        object
    }
}

/// Who caused an event: a user or API token; absent for what agentkey
/// itself noticed (expiry, first use).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Actor<'a> {
    id: &'a str,
    subject_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_token_name: Option<&'a str>,
}

/// An event ready for the outbox: its id, type, subject and JSON body.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub organization_id: String,
    pub event_type: EventType,
    pub subject_id: String,
    pub payload: String,
    pub created_at: i64,
}

impl Event {
    /// The event an audited change reports.
    pub fn of_change(kind: EventType, audit: &AuditEvent, org: &str, subject: &Snapshot) -> Event {
        Event::build(
            kind,
            org,
            audit.occurred_at,
            Some(&audit.actor),
            audit.request_id.as_deref(),
            subject,
            None,
        )
    }

    /// An event agentkey noticed itself: expiry, first use.
    pub fn observed(
        kind: EventType,
        org: &str,
        at: i64,
        subject: &Snapshot,
        threshold_days: Option<i64>,
    ) -> Event {
        Event::build(kind, org, at, None, None, subject, threshold_days)
    }

    fn build(
        kind: EventType,
        org: &str,
        at: i64,
        actor: Option<&Subject>,
        request_id: Option<&str>,
        subject: &Snapshot,
        threshold_days: Option<i64>,
    ) -> Event {
        let id = crate::token::id::new_ordered_id();
        let actor = actor.map(|a| Actor {
            id: &a.id,
            subject_type: a.subject_type.as_str(),
            api_token_name: a.api_token_name.as_deref(),
        });
        let mut data = json!({ "object": subject.object() });
        if let Some(days) = threshold_days {
            data["thresholdDays"] = json!(days);
        }
        let mut body = json!({
            "id": id,
            "type": kind.as_str(),
            "createdAt": rfc3339(at),
            "organizationId": org,
        });
        // Absent, not `null`, when agentkey itself noticed what happened.
        if let Some(actor) = actor {
            body["actor"] = json!(actor);
        }
        if let Some(request_id) = request_id {
            body["requestId"] = json!(request_id);
        }
        body["data"] = data;
        Event {
            id,
            organization_id: org.to_string(),
            event_type: kind,
            subject_id: subject.id.clone(),
            payload: body.to_string(),
            created_at: at,
        }
    }
}

/// How long to wait before attempt `attempt + 1` (1-based `attempt` just
/// failed): `base` doubled per attempt, capped at `max`, with full jitter
/// over its upper half, so replicas that failed together do not retry
/// together. `jitter` is a random number in `[0, 1)`.
pub fn backoff(
    base: std::time::Duration,
    max: std::time::Duration,
    attempt: u32,
    jitter: f64,
) -> std::time::Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A random number in `[0, 1)` from the operating system.
pub fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_type_round_trips_and_audit_actions_map() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(
            EventType::of_audit("agentToken.rotate"),
            Some(EventType::AgentTokenRotated)
        );
        for action in [
            "allowedIpAddressRange.create",
            "allowedIpAddressRange.delete",
        ] {
            assert_eq!(
                EventType::of_audit(action),
                Some(EventType::AllowedIpRangeChanged)
            );
        }
        assert_eq!(EventType::of_audit("allowedIpAddressRange.refuse"), None);
        assert_eq!(EventType::of_audit("allowedIpRange.create"), None);
        assert_eq!(EventType::of_audit("apiToken.update"), None);
        assert_eq!(EventType::of_audit("webhook.create"), None);
    }

    #[test]
    fn type_column_matches_by_like() {
        let column =
            event_types_column(&[EventType::AgentTokenCreated, EventType::AgentTokenExpiring]);
        assert_eq!(column, ",agent_token.created,agent_token.expiring,");
        assert_eq!(
            event_types_of_column(&column),
            vec![EventType::AgentTokenCreated, EventType::AgentTokenExpiring]
        );
        assert_eq!(event_types_column(&[]), "*");
        assert!(event_types_of_column("*").is_empty());
    }

    #[test]
    fn backoff_doubles_within_its_cap() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(3600);
        assert_eq!(backoff(base, max, 1, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(base, max, 1, 0.0), Duration::from_secs(5));
        assert_eq!(backoff(base, max, 3, 1.0), Duration::from_secs(40));
        assert_eq!(backoff(base, max, 30, 1.0), max);
        let u = random_unit();
        assert!((0.0..1.0).contains(&u));
    }

    #[test]
    fn an_event_carries_no_secret_and_names_its_subject() {
        let subject = Snapshot {
            kind: "AGENT_TOKEN".into(),
            id: "ctok".into(),
            name: Some("ci".into()),
            parent_id: Some("cdep".into()),
            end_at: Some(1_669_091_832),
        };
        let e = Event::observed(
            EventType::AgentTokenExpiring,
            "corg",
            1_669_000_000,
            &subject,
            Some(1),
        );
        let v: Value = serde_json::from_str(&e.payload).unwrap();
        assert_eq!(v["type"], "agent_token.expiring");
        assert_eq!(v["data"]["object"]["deploymentId"], "cdep");
        assert_eq!(v["data"]["object"]["endAt"], "2022-11-22T04:37:12Z");
        assert_eq!(v["data"]["thresholdDays"], 1);
        assert!(v["actor"].is_null());
        assert_eq!(e.subject_id, "ctok");
    }
}

/// A webhook endpoint of an organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub organization_id: String,
    pub url: String,
    pub description: String,
    /// The types it receives; empty means every type.
    pub event_types: Vec<EventType>,
    /// Raised by each secret rotation; the secret derives from it.
    pub generation: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub created_by: Subject,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "PENDING",
            DeliveryStatus::Succeeded => "SUCCEEDED",
            DeliveryStatus::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> DeliveryStatus {
        match text {
            "SUCCEEDED" => DeliveryStatus::Succeeded,
            "FAILED" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    /// Milliseconds since the epoch.
    pub attempted_at_ms: i64,
    pub latency_ms: i64,
    /// The receiver's HTTP status, if it answered.
    pub status_code: Option<i64>,
    pub succeeded: bool,
    /// Why it failed, when it did: never a secret, never the response body.
    pub error: Option<String>,
}

/// One event to one endpoint, with its attempts (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    pub subject_id: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    /// When the next attempt is due (ms), while pending.
    pub due_ms: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// The event's JSON, exactly as it is sent.
    pub payload: String,
    pub attempt_log: Vec<Attempt>,
}

/// A delivery a worker holds the lease of, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub attempts: i64,
    pub deadline_ms: Option<i64>,
    pub url: String,
    pub generation: i64,
    pub payload: String,
}

/// What became of an attempt, for the store to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempt: Attempt,
    /// `Pending` with `due_ms` for a retry, or a final status.
    pub status: DeliveryStatus,
    pub due_ms: i64,
    pub deadline_ms: Option<i64>,
}

/// Milliseconds since the epoch, by the wall clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
