//! The served OpenAPI document is as tight as the server: it is well formed
//! (every `$ref` resolves, unique Astro-style operation ids, every path
//! parameter declared, `required` within `properties`), optional response
//! fields are never nullable, and real answers of the router (every
//! resource's create, get and list, errors) validate against the schemas
//! it declares for them, with undeclared fields refused. Required request
//! fields are required by the server too, list bounds and `sorts` values
//! are exactly what the server takes.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Map, Value};

use crate::common::{str_of, Reply, TestApp};

/// The document as the router serves it, with a validator per schema.
struct Doc {
    doc: Value,
    /// `components`, with `additionalProperties: false` on every object
    /// that lists its properties: a response field the document does not
    /// declare is a failure too.
    strict: Value,
}

impl Doc {
    async fn served(app: &TestApp) -> Doc {
        let reply = app.send(Method::GET, "/v1/openapi.json", None, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        let doc = reply.body;
        let mut strict = doc["components"].clone();
        close_objects(&mut strict);
        Doc { doc, strict }
    }

    fn operation(&self, method: &Method, template: &str) -> &Value {
        let operation = &self.doc["paths"][template][method.as_str().to_lowercase()];
        assert!(
            operation.is_object(),
            "{method} {template} is not in the document"
        );
        operation
    }

    /// Checks `instance` against `schema` (which may `$ref` the components).
    fn check(&self, schema: &Value, instance: &Value, strict: bool, what: &str) {
        let errors = self.errors(schema, instance, strict);
        if !errors.is_empty() {
            let shown: String = instance.to_string().chars().take(2000).collect();
            panic!(
                "{what} does not match {schema}:\n{}\nin {shown}",
                errors.join("\n")
            );
        }
    }

    fn errors(&self, schema: &Value, instance: &Value, strict: bool) -> Vec<String> {
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            _ => panic!("a schema is an object: {schema}"),
        };
        if strict {
            close_objects_at_top(&mut root);
        }
        let components = if strict {
            &self.strict
        } else {
            &self.doc["components"]
        };
        root.insert("components".into(), components.clone());
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .unwrap_or_else(|e| panic!("{schema} is not a valid JSON Schema: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("  at {}: {e}", e.instance_path()))
            .collect()
    }

    /// The JSON schema of an operation's answer with `status`.
    fn response_schema(
        &self,
        method: &Method,
        template: &str,
        status: StatusCode,
    ) -> Option<&Value> {
        let responses = &self.operation(method, template)["responses"];
        let response = &responses[status.as_str()];
        assert!(
            response.is_object(),
            "{method} {template} answered {status}, which the document does not declare"
        );
        let schema = &response["content"]["application/json"]["schema"];
        schema.is_object().then_some(schema)
    }

    /// Checks a real answer against what the document declares for it.
    #[track_caller]
    fn answer(&self, method: Method, template: &str, reply: &Reply) {
        match self.response_schema(&method, template, reply.status) {
            Some(schema) => self.check(
                schema,
                &reply.body,
                true,
                &format!("{method} {template} {}", reply.status),
            ),
            None => assert!(
                reply.raw.is_empty(),
                "{method} {template} {} declares no body but sent one",
                reply.status
            ),
        }
    }

    /// The JSON request body schema of an operation, if it takes one.
    fn request_schema(&self, operation: &Value) -> Option<Value> {
        let content = &operation["requestBody"]["content"]["application/json"];
        content.is_object().then(|| content["schema"].clone())
    }

    /// Resolves a local `$ref` (or answers the value itself).
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(reference) => self.pointer(reference),
            None => value,
        }
    }

    fn pointer(&self, reference: &str) -> &Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not a local reference"));
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{reference} does not resolve"))
    }

    /// Every (method, path, operation) of the document.
    fn operations(&self) -> Vec<(Method, String, &Value)> {
        let mut all = Vec::new();
        for (path, item) in self.doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                all.push((method, path.clone(), operation));
            }
        }
        all
    }
}

/// `additionalProperties: false` on every object schema that lists its
/// properties (not inside an `allOf`, whose parts each list only some).
fn close_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            close_objects_at_top(map);
            for (key, child) in map.iter_mut() {
                if key != "allOf" {
                    close_objects(child);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

fn close_objects_at_top(map: &mut Map<String, Value>) {
    if map.contains_key("properties") && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
}

/// `template` with its `{parameters}` replaced by `ids`, in order.
fn fill(template: &str, ids: &[&str]) -> String {
    let mut path = String::new();
    let mut ids = ids.iter();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').unwrap() + open;
        path.push_str(&rest[..open]);
        path.push_str(ids.next().expect("an id for every parameter"));
        rest = &rest[close + 1..];
    }
    path.push_str(rest);
    assert!(
        ids.next().is_none(),
        "more ids than parameters in {template}"
    );
    path
}

/// Calls the router and checks the answer against the document.
async fn call(
    app: &TestApp,
    doc: &Doc,
    method: Method,
    template: &str,
    ids: &[&str],
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let reply = app
        .send(method.clone(), &fill(template, ids), token, body)
        .await;
    doc.answer(method, template, &reply);
    reply
}

const ORGS: &str = "/v1/organizations";
const ORG: &str = "/v1/organizations/{organizationId}";
const WORKSPACES: &str = "/v1/organizations/{organizationId}/workspaces";
const WORKSPACE: &str = "/v1/organizations/{organizationId}/workspaces/{workspaceId}";
const DEPLOYMENTS: &str = "/v1/organizations/{organizationId}/deployments";
const DEPLOYMENT: &str = "/v1/organizations/{organizationId}/deployments/{deploymentId}";
const AGENT_TOKENS: &str =
    "/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens";
const AGENT_TOKEN: &str =
    "/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}";
const API_TOKENS: &str = "/v1/organizations/{organizationId}/tokens";
/// An id shaped like one (`c` and 24 characters) that names nothing.
const MISSING: &str = "c000000000000000000000000";
const MISSING_QUERY: &str = "?deploymentId=c000000000000000000000000";
const API_TOKEN: &str = "/v1/organizations/{organizationId}/tokens/{tokenId}";

async fn the_document_is_well_formed(app: TestApp) {
    let doc = Doc::served(&app).await;
    assert!(doc.doc["openapi"].as_str().unwrap().starts_with("3.1"));

    // Every `$ref` resolves.
    let mut references = Vec::new();
    collect_refs(&doc.doc, &mut references);
    assert!(references.len() > 20, "the document uses references");
    for reference in &references {
        doc.pointer(reference);
    }

    // Unique operation ids in Astro's style (`ListAgentTokens`), every
    // path parameter declared (and every declared one in the path).
    let mut ids = BTreeSet::new();
    for (method, path, operation) in doc.operations() {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(
            id.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{method} {path}: operationId {id:?} is not UpperCamelCase"
        );
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");

        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let parameters = operation["parameters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let declared: BTreeSet<&str> = parameters
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{method} {path}: {p}");
                p["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(declared, in_path, "{method} {path}: path parameters");
        let mut names = BTreeSet::new();
        for p in &parameters {
            let key = format!("{}:{}", p["in"], p["name"]);
            assert!(names.insert(key), "{method} {path}: {p} declared twice");
        }
    }
    // The operation ids Astro's generated clients call, on Astro's paths.
    for (method, path, id) in [
        (Method::GET, ORGS, "ListOrganizations"),
        (Method::GET, ORG, "GetOrganization"),
        (Method::GET, WORKSPACES, "ListWorkspaces"),
        (Method::POST, WORKSPACES, "CreateWorkspace"),
        (Method::GET, WORKSPACE, "GetWorkspace"),
        (Method::GET, DEPLOYMENTS, "ListDeployments"),
        (Method::POST, DEPLOYMENTS, "CreateDeployment"),
        (Method::GET, DEPLOYMENT, "GetDeployment"),
        (Method::DELETE, DEPLOYMENT, "DeleteDeployment"),
        (Method::GET, AGENT_TOKENS, "ListAgentTokens"),
        (Method::POST, AGENT_TOKENS, "CreateAgentToken"),
        (Method::GET, AGENT_TOKEN, "GetAgentToken"),
        (Method::DELETE, AGENT_TOKEN, "DeleteAgentToken"),
        (Method::GET, API_TOKENS, "ListApiTokens"),
        (Method::POST, API_TOKENS, "CreateApiToken"),
        (Method::GET, API_TOKEN, "GetApiToken"),
        (Method::POST, API_TOKEN, "UpdateApiToken"),
        (Method::DELETE, API_TOKEN, "DeleteApiToken"),
        (
            Method::POST,
            "/v1/organizations/{organizationId}/tokens/{tokenId}/roles",
            "UpdateApiTokenRoles",
        ),
        (
            Method::POST,
            "/v1/organizations/{organizationId}/tokens/{tokenId}/rotate",
            "RotateApiToken",
        ),
        (
            Method::GET,
            "/v1/organizations/{organizationId}/audit-logs",
            "GetOrganizationAuditLogs",
        ),
    ] {
        assert_eq!(
            doc.operation(&method, path)["operationId"],
            id,
            "{method} {path}"
        );
    }

    // `required` names only properties the schema has (an `allOf` part
    // may require what a sibling part declares).
    let mut checked = 0;
    check_required(&doc, &doc.doc["components"], &BTreeSet::new(), &mut checked);
    assert!(checked > 10, "required lists were found and checked");

    // No credential on health, readiness and this document; the bearer
    // scheme everywhere else.
    for (method, path, operation) in doc.operations() {
        let open = ["/healthz", "/readyz", "/v1/openapi.json"].contains(&path.as_str());
        if open {
            assert_eq!(operation["security"], json!([{}]), "{method} {path}");
            assert!(operation["responses"]["401"].is_null(), "{method} {path}");
        } else {
            assert!(
                operation["security"].is_null(),
                "{method} {path} keeps the bearer scheme"
            );
        }
    }
    assert_eq!(doc.doc["security"], json!([{ "bearer": [] }]));
    assert_eq!(
        doc.doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Optional response fields are optional, never nullable: the server
    // omits them.
    for (method, path, operation) in doc.operations() {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let schema = &response["content"]["application/json"]["schema"];
            if schema.is_object() {
                let mut seen = BTreeSet::new();
                assert_no_null(
                    &doc,
                    schema,
                    &mut seen,
                    &format!("{method} {path} {status}"),
                );
            }
        }
    }
}

fn collect_refs(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                into.push(r.clone());
            }
            map.values().for_each(|v| collect_refs(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

fn property_names(doc: &Doc, schema: &Value) -> BTreeSet<String> {
    let schema = doc.resolve(schema);
    let mut names: BTreeSet<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        names.extend(property_names(doc, part));
    }
    names
}

fn check_required(doc: &Doc, value: &Value, inherited: &BTreeSet<String>, checked: &mut usize) {
    match value {
        Value::Object(map) => {
            let mut known = property_names(doc, value);
            if let Some(Value::Array(required)) = map.get("required") {
                known.extend(inherited.iter().cloned());
                for name in required {
                    let name = name.as_str().unwrap();
                    assert!(
                        known.contains(name),
                        "{name:?} is required but not a property: {value}"
                    );
                }
                *checked += 1;
            }
            for (key, child) in map {
                let context = match key.as_str() {
                    "allOf" => property_names(doc, value),
                    "oneOf" | "anyOf" => inherited.clone(),
                    _ => BTreeSet::new(),
                };
                if let Value::Array(parts) = child {
                    for part in parts {
                        check_required(doc, part, &context, checked);
                    }
                } else {
                    check_required(doc, child, &context, checked);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                check_required(doc, item, inherited, checked);
            }
        }
        _ => {}
    }
}

fn assert_no_null(doc: &Doc, schema: &Value, seen: &mut BTreeSet<String>, at: &str) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                if seen.insert(reference.clone()) {
                    assert_no_null(doc, doc.pointer(reference), seen, at);
                }
            }
            let null = match map.get("type") {
                Some(Value::String(t)) => t == "null",
                Some(Value::Array(types)) => types.iter().any(|t| t == "null"),
                _ => false,
            };
            assert!(!null, "{at}: a response schema allows null: {schema}");
            map.values().for_each(|v| assert_no_null(doc, v, seen, at));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_no_null(doc, v, seen, at)),
        _ => {}
    }
}

/// What the issue named: required request fields, enums, formats, bounds.
async fn the_document_says_what_the_server_enforces(app: TestApp) {
    let doc = Doc::served(&app).await;
    let schemas = &doc.doc["components"]["schemas"];
    for (schema, fields) in [
        ("CreateAgentTokenRequest", &["name"][..]),
        ("CreateOrganizationRequest", &["name"]),
        ("CreateWorkspaceRequest", &["name"]),
        ("CreateDeploymentRequest", &["name", "workspaceId"]),
        ("UpdateApiTokenRequest", &["name"]),
        ("UpdateApiTokenRolesRequest", &["roles"]),
        ("ApiTokenRoleRequest", &["entityId", "entityType", "role"]),
        ("IntrospectionRequest", &["token"]),
    ] {
        let required = &schemas[schema]["required"];
        for field in fields {
            assert!(
                required.as_array().unwrap().contains(&json!(field)),
                "{schema}.{field} is required"
            );
            let property = &schemas[schema]["properties"][field];
            assert!(
                property["type"].is_string() || property["$ref"].is_string(),
                "{schema}.{field} is not nullable: {property}"
            );
        }
    }
    // An API token's scope comes as `scope` or `type`, exactly one.
    let api = &schemas["CreateApiTokenRequest"]["allOf"];
    assert_eq!(api[0]["required"], json!(["name", "role"]));
    assert_eq!(
        api[1]["oneOf"],
        json!([{"type": "object", "required": ["scope"]}, {"type": "object", "required": ["type"]}])
    );
    assert_eq!(api[0]["properties"]["type"], api[0]["properties"]["scope"]);

    let enum_of = |name: &str| -> BTreeSet<String> {
        schemas[name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is an enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let set = |values: &[&str]| {
        values
            .iter()
            .map(|v| v.to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        enum_of("ApiTokenScope"),
        set(&["ORGANIZATION", "WORKSPACE", "DEPLOYMENT"])
    );
    assert_eq!(enum_of("ApiTokenKind"), set(&["STANDARD"]));
    assert_eq!(enum_of("SubjectType"), set(&["USER", "SERVICEKEY"]));
    assert!(enum_of("AuditActionName").contains("agentToken.create"));
    assert_eq!(
        schemas["AuditLog"]["properties"]["action"]["$ref"],
        "#/components/schemas/AuditActionName"
    );
    let audit = doc.operation(
        &Method::GET,
        "/v1/organizations/{organizationId}/audit-logs",
    );
    for p in audit["parameters"].as_array().unwrap() {
        match p["name"].as_str().unwrap() {
            "startDate" | "endDate" => assert_eq!(p["schema"]["format"], "date-time", "{p}"),
            "action" => assert_eq!(
                p["schema"]["enum"].as_array().map(Vec::len),
                schemas["AuditActionName"]["enum"].as_array().map(Vec::len)
            ),
            _ => {}
        }
    }
    let roles = enum_of("RoleName");
    assert!(roles.contains("ORGANIZATION_OWNER") && roles.contains("DEPLOYMENT_ADMIN"));
    assert_eq!(
        enum_of("GrantedRole"),
        roles
            .iter()
            .cloned()
            .chain(["DEPLOYMENT_AGENT".to_string()])
            .collect()
    );
    let token = &schemas["ApiToken"]["properties"];
    for (field, schema) in [
        ("kind", "ApiTokenKind"),
        ("scope", "ApiTokenScope"),
        ("type", "ApiTokenScope"),
    ] {
        assert_eq!(
            token[field]["$ref"],
            format!("#/components/schemas/{schema}"),
            "{field}"
        );
    }
    assert_eq!(
        schemas["ApiTokenRole"]["properties"]["entityType"]["$ref"],
        "#/components/schemas/ApiTokenScope"
    );
    assert_eq!(
        schemas["BasicSubjectProfile"]["properties"]["subjectType"]["$ref"],
        "#/components/schemas/SubjectType"
    );
    for (schema, fields) in [
        (
            "ApiToken",
            &[
                "createdAt",
                "updatedAt",
                "startAt",
                "endAt",
                "lastUsedAt",
                "lastRotatedAt",
            ][..],
        ),
        ("Organization", &["createdAt", "updatedAt"]),
        ("Workspace", &["createdAt", "updatedAt"]),
        ("Deployment", &["createdAt", "updatedAt"]),
        ("AuditLog", &["createdAt"]),
        ("Authorization", &["expiresAt"]),
    ] {
        for field in fields {
            assert_eq!(
                schemas[schema]["properties"][field]["format"], "date-time",
                "{schema}.{field}"
            );
        }
    }

    // Every list's bounds and sorts, tried on the server: each value the
    // document allows is taken, the first beyond each bound is refused.
    let t = app.tenant().await;
    let ids = Ids {
        org: t.org.clone(),
        workspace: t.workspace.clone(),
        deployment: t.deployment.clone(),
        agent_token: String::new(),
        api_token: String::new(),
        webhook: webhook_of(&app, &t.org).await,
    };
    let mut lists = 0;
    for (method, path, operation) in doc.operations() {
        let Some(parameters) = operation["parameters"].as_array() else {
            continue;
        };
        let Some(limit) = parameters.iter().find(|p| p["name"] == "limit") else {
            continue;
        };
        lists += 1;
        let base = fill(&path, &ids.for_path(&path));
        let get = |query: String| {
            let uri = format!("{base}?{query}");
            let app = &app;
            async move { app.get(&uri).await }
        };
        let limit = &limit["schema"];
        // Every list pages up to 1,000, webhook deliveries (with their
        // attempts) up to 100.
        let max = if path.ends_with("/deliveries") {
            100
        } else {
            1000
        };
        assert_eq!(
            (limit["minimum"].as_i64(), limit["maximum"].as_i64()),
            (Some(0), Some(max)),
            "{path}"
        );
        if !path.ends_with("/deliveries") {
            assert_eq!(limit["default"], 20, "{path}");
        }
        for (query, ok) in [
            ("limit=0".to_string(), true),
            (format!("limit={max}"), true),
            (format!("limit={}", max + 1), false),
            ("limit=-1".to_string(), false),
            ("offset=0".to_string(), true),
            ("offset=-1".to_string(), false),
        ] {
            let reply = get(query.clone()).await;
            assert_eq!(
                reply.status.is_success(),
                ok,
                "{method} {path}?{query}: {}",
                reply.body
            );
            doc.answer(method.clone(), &path, &reply);
        }
        let offset = &parameters.iter().find(|p| p["name"] == "offset").unwrap()["schema"];
        assert_eq!(offset["minimum"], 0, "{path}");
        let Some(sorts) = parameters.iter().find(|p| p["name"] == "sorts") else {
            // Deliveries come newest first, in one order only.
            assert!(path.ends_with("/deliveries"), "{path} has no sorts");
            continue;
        };
        assert_eq!(
            (&sorts["style"], &sorts["explode"]),
            (&json!("form"), &json!(true))
        );
        let values = sorts["schema"]["items"]["enum"].as_array().unwrap();
        assert!(!values.is_empty(), "{path}");
        for value in values {
            let value = value.as_str().unwrap();
            let reply = get(format!("sorts={}", value.replace(':', "%3A"))).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{path}?sorts={value}: {}",
                reply.body
            );
        }
        let fields: BTreeSet<&str> = values
            .iter()
            .map(|v| v.as_str().unwrap().split(':').next().unwrap())
            .collect();
        for field in ["bogus", "id", "name", "createdById"] {
            if !fields.contains(field) {
                get(format!("sorts={field}:asc")).await.assert_error(400);
            }
        }
    }
    assert!(lists >= 6, "every list was tried: {lists}");
}

/// A valid body for every operation that takes a JSON body; the test
/// below sends it whole, with only its required fields, and without each
/// required field in turn.
fn sample_body(operation_id: &str, ids: &Ids) -> Value {
    fn fresh() -> u8 {
        static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
    match operation_id {
        "CreateOrganization" => json!({"name": "org b"}),
        "CreateWorkspace" => json!({"name": "ws b", "description": "d"}),
        "CreateDeployment" => {
            json!({"name": "dep b", "workspaceId": ids.workspace, "description": "d"})
        }
        "CreateAgentToken" => {
            json!({"name": "agent b", "description": "", "tokenExpiryPeriodInDays": 30})
        }
        "RotateAgentToken" => json!({"gracePeriodSeconds": 60}),
        "CreateApiToken" => json!({
            "name": "ci", "description": "d", "role": "WORKSPACE_OPERATOR", "scope": "WORKSPACE",
            "entityId": ids.workspace, "kind": "STANDARD", "tokenExpiryPeriodInDays": 7
        }),
        "UpdateApiToken" => json!({"name": "renamed", "description": "d"}),
        // A range can be added once: each sample is a range not sent before.
        "CreateAllowedIpAddressRange" => {
            json!({"ipAddressRange": format!("10.{}.0.0/16", fresh())})
        }
        "BulkCreateAllowedIpAddressRanges" => {
            let n = fresh();
            json!({"allowedIpAddressRanges": [format!("10.{n}.0.0/16"), format!("2001:db8:{n:x}::/48")]})
        }
        "BulkDeleteAllowedIpAddressRanges" => json!({"allowedIpAddressRangeIds": ["unknown"]}),
        "CreateWebhook" => json!({
            "url": "http://127.0.0.1:9/hook", "description": "d",
            "eventTypes": ["agent_token.created"]
        }),
        "UpdateOrganization" => json!({"name": "org renamed", "isScimEnabled": false}),
        "UpdateWorkspace" => {
            json!({"name": "ws renamed", "description": "d", "cicdEnforcedDefault": true})
        }
        "UpdateDeployment" => json!({
            "name": "dep renamed", "description": "d", "isCicdEnforced": true,
            "workspaceId": ids.workspace, "type": "STANDARD"
        }),
        "UpdateApiTokenRoles" => json!({"roles": [
            {"entityType": "WORKSPACE", "entityId": ids.workspace, "role": "WORKSPACE_AUTHOR"}
        ]}),
        other => panic!(
            "{other} takes a JSON body: give it a sample in tests/it/openapi.rs (sample_body)"
        ),
    }
}

/// Fields a minimal body needs beyond the schema's `required`: an API
/// token's scope (`scope` or `type`, a `oneOf`) and, for a workspace
/// token, its `entityId` (required for every scope but `ORGANIZATION`).
fn also_needed(operation_id: &str) -> &'static [&'static str] {
    match operation_id {
        "CreateApiToken" => &["scope", "entityId"],
        _ => &[],
    }
}

struct Ids {
    org: String,
    workspace: String,
    deployment: String,
    agent_token: String,
    api_token: String,
    webhook: String,
}

/// A webhook endpoint of `org`, made for the paths that need one.
async fn webhook_of(app: &TestApp, org: &str) -> String {
    let reply = app
        .post(
            format!("/v1/organizations/{org}/webhooks"),
            json!({"url": "http://127.0.0.1:9/hook"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    str_of(&reply.body, "id").to_string()
}

/// Settings with webhooks on (a key, loopback receivers allowed), so their
/// operations answer as they do on a server that has them.
pub fn webhooks_on() -> agentkey::app::Settings {
    agentkey::app::Settings {
        webhooks: crate::webhooks::settings(),
        ..Default::default()
    }
}

impl Ids {
    fn for_path(&self, template: &str) -> Vec<&str> {
        template
            .split('/')
            .filter(|s| s.starts_with('{'))
            .map(|s| match s {
                "{organizationId}" => self.org.as_str(),
                "{workspaceId}" => &self.workspace,
                "{deploymentId}" => &self.deployment,
                "{agentTokenId}" => &self.agent_token,
                "{tokenId}" => &self.api_token,
                "{webhookId}" => &self.webhook,
                other => panic!("no id for {other}"),
            })
            .collect()
    }
}

/// Every JSON request body: the sample matches its schema and the server
/// takes it; with only the required fields too; without any one required
/// field, the document refuses it and so does the server, with a 400
/// naming that field.
async fn required_request_fields_are_required_by_both(app: TestApp) {
    let doc = Doc::served(&app).await;
    let t = app.tenant().await;
    let agent = app.agent_token(&t, json!({"name": "a"})).await;
    let api = app
        .post(
            format!("/v1/organizations/{}/tokens", t.org),
            json!({"name": "api", "role": "WORKSPACE_OWNER", "scope": "WORKSPACE", "entityId": t.workspace}),
        )
        .await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.body);
    let ids = Ids {
        org: t.org.clone(),
        workspace: t.workspace.clone(),
        deployment: t.deployment.clone(),
        agent_token: str_of(&agent, "id").to_string(),
        api_token: str_of(&api.body, "id").to_string(),
        webhook: webhook_of(&app, &t.org).await,
    };
    let mut bodies = 0;
    for (method, template, operation) in doc.operations() {
        let Some(schema) = doc.request_schema(operation) else {
            continue;
        };
        bodies += 1;
        let id = operation["operationId"].as_str().unwrap();
        let sample = sample_body(id, &ids);
        let path = fill(&template, &ids.for_path(&template));
        doc.check(&schema, &sample, false, &format!("the sample of {id}"));
        let reply = app
            .send(method.clone(), &path, Some(&app.root), Some(sample.clone()))
            .await;
        assert!(reply.status.is_success(), "{id} {}", reply.body);
        doc.answer(method.clone(), &template, &reply);

        let resolved = doc.resolve(&schema);
        let parts: Vec<&Value> = match resolved["allOf"].as_array() {
            Some(parts) => parts.iter().map(|p| doc.resolve(p)).collect(),
            None => vec![resolved],
        };
        let required: BTreeSet<String> = parts
            .iter()
            .flat_map(|p| p["required"].as_array().cloned().unwrap_or_default())
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        // A second sample: some bodies (allowlist ranges) can be sent once.
        let minimal: Map<String, Value> = sample_body(id, &ids)
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| required.contains(*k) || also_needed(id).contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        doc.check(
            &schema,
            &Value::Object(minimal.clone()),
            false,
            &format!("{id} with its required fields"),
        );
        let reply = app
            .send(
                method.clone(),
                &path,
                Some(&app.root),
                Some(Value::Object(minimal.clone())),
            )
            .await;
        assert!(
            reply.status.is_success(),
            "{id} with {minimal:?}: {} {}",
            reply.status,
            reply.body
        );

        for field in &required {
            let mut without = sample.as_object().unwrap().clone();
            assert!(
                without.remove(field).is_some(),
                "the sample of {id} has {field}"
            );
            let without = Value::Object(without);
            assert!(
                !doc.errors(&schema, &without, false).is_empty(),
                "the document takes {id} without {field}"
            );
            let reply = app
                .send(method.clone(), &path, Some(&app.root), Some(without))
                .await;
            reply.assert_error(400);
            assert!(
                reply.fields().contains(field),
                "{id} without {field}: {}",
                reply.body
            );
            doc.answer(method.clone(), &template, &reply);
        }
    }
    assert!(bodies >= 8, "every JSON body was tried: {bodies}");

    // The one form: introspection without its required `token`.
    let reply = app
        .raw(
            Request::post("/v1/introspect")
                .header("authorization", format!("Bearer {}", app.root))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from("token_type_hint=access_token"))
                .unwrap(),
        )
        .await;
    reply.assert_error(400);
    assert_eq!(reply.fields(), ["token"]);
    doc.answer(Method::POST, "/v1/introspect", &reply);

    // An API token's scope: `type` alone is taken, both or neither are not.
    let tokens = format!("/v1/organizations/{}/tokens", t.org);
    let create = |extra: Value| {
        let mut body = json!({"name": "t", "role": "ORGANIZATION_MEMBER"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let schema = json!({"$ref": "#/components/schemas/CreateApiTokenRequest"});
    let typed = create(json!({"type": "ORGANIZATION"}));
    doc.check(&schema, &typed, false, "type instead of scope");
    let reply = app.post(&tokens, typed).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    doc.answer(Method::POST, API_TOKENS, &reply);
    for refused in [
        create(json!({})),
        create(json!({"type": "ORGANIZATION", "scope": "ORGANIZATION"})),
    ] {
        assert!(
            !doc.errors(&schema, &refused, false).is_empty(),
            "{refused}"
        );
        let reply = app.post(&tokens, refused).await;
        reply.assert_error(400);
        doc.answer(Method::POST, API_TOKENS, &reply);
    }
}

/// A life cycle through the real router, every answer checked against the
/// schema the document declares for its operation and status.
async fn real_answers_match_their_schemas(app: TestApp) {
    let doc = Doc::served(&app).await;
    let root = Some(app.root.as_str());
    let c = |method: Method, template: &'static str, ids: Vec<String>, body: Option<Value>| {
        let (app, doc) = (&app, &doc);
        async move {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            call(app, doc, method, template, &ids, root, body).await
        }
    };
    let org = c(Method::POST, ORGS, vec![], Some(json!({"name": "acme"}))).await;
    let org = str_of(&org.body, "id").to_string();
    c(Method::GET, ORGS, vec![], None).await;
    c(Method::GET, ORG, vec![org.clone()], None).await;
    let ws = c(
        Method::POST,
        WORKSPACES,
        vec![org.clone()],
        Some(json!({"name": "ws"})),
    )
    .await;
    let ws = str_of(&ws.body, "id").to_string();
    c(Method::GET, WORKSPACES, vec![org.clone()], None).await;
    c(Method::GET, WORKSPACE, vec![org.clone(), ws.clone()], None).await;
    let dep = c(
        Method::POST,
        DEPLOYMENTS,
        vec![org.clone()],
        Some(json!({"name": "dep", "workspaceId": ws, "description": ""})),
    )
    .await;
    let dep = str_of(&dep.body, "id").to_string();
    c(Method::GET, DEPLOYMENTS, vec![org.clone()], None).await;
    c(
        Method::GET,
        DEPLOYMENT,
        vec![org.clone(), dep.clone()],
        None,
    )
    .await;

    // Agent tokens: one that never expires (no endAt, no
    // expiryPeriodInDays: omitted, not null) and one that does.
    let od = vec![org.clone(), dep.clone()];
    let forever = c(
        Method::POST,
        AGENT_TOKENS,
        od.clone(),
        Some(json!({"name": "forever"})),
    )
    .await;
    assert!(
        forever.body.get("endAt").is_none() && forever.body.get("expiryPeriodInDays").is_none()
    );
    let secret = str_of(&forever.body, "token").to_string();
    let expiring = c(
        Method::POST,
        AGENT_TOKENS,
        od.clone(),
        Some(json!({"name": "month", "description": "d", "tokenExpiryPeriodInDays": 30})),
    )
    .await;
    assert!(expiring.body["endAt"].is_string());
    let agent = str_of(&expiring.body, "id").to_string();
    let odt = vec![org.clone(), dep.clone(), agent.clone()];
    c(Method::GET, AGENT_TOKENS, od.clone(), None).await;
    c(Method::GET, AGENT_TOKEN, odt.clone(), None).await;
    let rotated = c(
        Method::POST,
        "/v1/organizations/{organizationId}/deployments/{deploymentId}/agent-tokens/{agentTokenId}/rotate",
        odt.clone(),
        Some(json!({"gracePeriodSeconds": 60})),
    )
    .await;
    assert!(rotated.body["previousSecretValidUntil"].is_string());
    c(Method::GET, AGENT_TOKEN, odt.clone(), None).await;

    // Verification, with and without an expiry.
    let authorize = |token: String, query: &'static str| {
        let (app, doc) = (&app, &doc);
        async move {
            let reply = app
                .send(
                    Method::GET,
                    &format!("/v1/authorize{query}"),
                    Some(&token),
                    None,
                )
                .await;
            doc.answer(Method::GET, "/v1/authorize", &reply);
            reply
        }
    };
    let verified = authorize(secret.clone(), "").await;
    assert_eq!(verified.status, StatusCode::OK);
    assert!(
        verified.body.get("expiresAt").is_none(),
        "never: omitted, not null"
    );
    let verified = authorize(str_of(&rotated.body, "token").to_string(), "").await;
    assert!(verified.body["expiresAt"].is_string());
    authorize(secret.clone(), MISSING_QUERY)
        .await
        .assert_error(403);
    authorize("akagt_nonsense".into(), "")
        .await
        .assert_error(401);
    for token in [secret.as_str(), "akagt_nonsense"] {
        let reply = app
            .raw(
                Request::post("/v1/introspect")
                    .header("authorization", format!("Bearer {}", app.root))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(format!("token={token}")))
                    .unwrap(),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        doc.answer(Method::POST, "/v1/introspect", &reply);
    }

    // API tokens, as `/v1` and Terraform-shaped (`type`) requests.
    let api = c(
        Method::POST,
        API_TOKENS,
        vec![org.clone()],
        Some(json!({"name": "ci", "role": "DEPLOYMENT_ADMIN", "type": "DEPLOYMENT", "entityId": dep})),
    )
    .await;
    let api_secret = str_of(&api.body, "token").to_string();
    let api = str_of(&api.body, "id").to_string();
    let oa = vec![org.clone(), api.clone()];
    c(Method::GET, API_TOKENS, vec![org.clone()], None).await;
    c(Method::GET, API_TOKEN, oa.clone(), None).await;
    c(
        Method::POST,
        API_TOKEN,
        oa.clone(),
        Some(json!({"name": "ci 2"})),
    )
    .await;
    let roles = c(
        Method::POST,
        "/v1/organizations/{organizationId}/tokens/{tokenId}/roles",
        oa.clone(),
        Some(json!({"roles": [{"entityType": "DEPLOYMENT", "entityId": dep, "role": "DEPLOYMENT_ADMIN"}]})),
    )
    .await;
    assert!(roles.body.get("organizationRole").is_none());
    let org_token = c(
        Method::POST,
        API_TOKENS,
        vec![org.clone()],
        Some(json!({"name": "owner", "role": "ORGANIZATION_OWNER", "scope": "ORGANIZATION"})),
    )
    .await;
    let roles = c(
        Method::POST,
        "/v1/organizations/{organizationId}/tokens/{tokenId}/roles",
        vec![org.clone(), str_of(&org_token.body, "id").to_string()],
        Some(json!({"roles": [{"entityType": "ORGANIZATION", "entityId": org, "role": "ORGANIZATION_OWNER"}]})),
    )
    .await;
    assert_eq!(roles.body["organizationRole"], "ORGANIZATION_OWNER");
    // What the API token itself is shown as (SERVICEKEY with its name).
    let by_token = call(
        &app,
        &doc,
        Method::POST,
        AGENT_TOKENS,
        &[&org, &dep],
        Some(&api_secret),
        Some(json!({"name": "by ci"})),
    )
    .await;
    assert_eq!(by_token.body["createdBy"]["apiTokenName"], "ci 2");
    c(
        Method::POST,
        "/v1/organizations/{organizationId}/tokens/{tokenId}/rotate",
        oa.clone(),
        None,
    )
    .await;

    // The same answers under `/iam/v1beta1`, where the Terraform provider
    // reads `type`: the document's `/v1` schemas hold for them too.
    for (template, ids) in [
        (API_TOKEN, vec![org.as_str(), api.as_str()]),
        (AGENT_TOKENS, vec![org.as_str(), dep.as_str()]),
        (DEPLOYMENT, vec![org.as_str(), dep.as_str()]),
        (WORKSPACES, vec![org.as_str()]),
    ] {
        let path = fill(template, &ids).replacen("/v1/", "/iam/v1beta1/", 1);
        let reply = app.get(&path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        doc.answer(Method::GET, template, &reply);
    }

    // The audit trail, with events of the root credential and a token.
    let trail = c(
        Method::GET,
        "/v1/organizations/{organizationId}/audit-logs",
        vec![org.clone()],
        None,
    )
    .await;
    assert!(trail.body["totalCount"].as_i64().unwrap() > 5);

    // Errors: 400 with fieldErrors, 401, 403, 404.
    let bad = c(Method::GET, AGENT_TOKENS, od.clone(), None).await;
    assert_eq!(bad.status, StatusCode::OK);
    let bad = app
        .get(format!(
            "{}?limit=1001&sorts=bogus:asc",
            fill(AGENT_TOKENS, &[&org, &dep])
        ))
        .await;
    bad.assert_error(400);
    doc.answer(Method::GET, AGENT_TOKENS, &bad);
    let reply = c(
        Method::POST,
        WORKSPACES,
        vec![org.clone()],
        Some(json!({"description": "x"})),
    )
    .await;
    assert_eq!(reply.fields(), ["name"]);
    call(&app, &doc, Method::GET, ORGS, &[], None, None)
        .await
        .assert_error(401);
    call(
        &app,
        &doc,
        Method::GET,
        WORKSPACES,
        &[&org],
        Some(&secret),
        None,
    )
    .await
    .assert_error(403);
    c(
        Method::GET,
        DEPLOYMENT,
        vec![org.clone(), MISSING.into()],
        None,
    )
    .await
    .assert_error(404);
    c(Method::DELETE, AGENT_TOKEN, odt.clone(), None).await;
    c(Method::DELETE, AGENT_TOKEN, odt.clone(), None)
        .await
        .assert_error(404);
    c(Method::DELETE, API_TOKEN, oa.clone(), None).await;
    c(Method::DELETE, DEPLOYMENT, od.clone(), None).await;

    // Health and readiness, which take no credential.
    for path in ["/healthz", "/readyz"] {
        let reply = app.send(Method::GET, path, None, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        doc.answer(Method::GET, path, &reply);
    }
}

/// The checker itself refuses what it must: an undeclared field, a null
/// optional field, a wrong enum value, a timestamp that is not one.
async fn the_checker_refuses_what_it_must(app: TestApp) {
    let doc = Doc::served(&app).await;
    let t = app.tenant().await;
    let token = app.agent_token(&t, json!({"name": "a"})).await;
    let schema = json!({"$ref": "#/components/schemas/ApiToken"});
    doc.check(&schema, &token, true, "a real token");
    let mut broken: BTreeMap<&str, Value> = BTreeMap::new();
    let with = |key: &str, value: Value| {
        let mut body = token.clone();
        body[key] = value;
        body
    };
    broken.insert("an undeclared field", with("secretHash", json!("x")));
    broken.insert("a null optional field", with("endAt", Value::Null));
    broken.insert("another kind", with("kind", json!("DIRECT")));
    broken.insert("not a timestamp", with("createdAt", json!("yesterday")));
    broken.insert("a missing required field", {
        let mut body = token.clone();
        body.as_object_mut().unwrap().remove("shortToken");
        body
    });
    for (what, body) in broken {
        assert!(
            !doc.errors(&schema, &body, true).is_empty(),
            "{what} passed"
        );
    }
}

on_every_backend!(
    settings = crate::openapi::webhooks_on();
    the_document_is_well_formed,
    the_document_says_what_the_server_enforces,
    required_request_fields_are_required_by_both,
    real_answers_match_their_schemas,
    the_checker_refuses_what_it_must,
);
