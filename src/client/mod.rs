//! The CLI's HTTP client: sends one request to an agentkey server and turns
//! every way it can fail into a [`ClientError`] with a distinct exit code.
//!
//! A command flows one way: `cli` (parses the flags of `args`) → `commands` (which request, which
//! view) → this module (HTTP, status → error) → `output` (table or JSON).
//!
//! The credential comes only from `AGENTKEY_TOKEN`, is held as a
//! [`SecretString`] (whose `Debug` is redacted) and leaves the process only
//! in the `Authorization` header, marked sensitive. Redirects are not
//! followed, so the header is never replayed to another address.

pub mod args;
pub mod commands;
pub mod output;

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

/// The environment variable that holds the credential (never a flag, so it
/// does not land in shell history).
pub const TOKEN_ENV: &str = "AGENTKEY_TOKEN";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What went wrong, as far as a script cares: each kind is one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The command line or environment is incomplete or malformed (2, as
    /// clap's own usage errors).
    Usage,
    /// 404 (3).
    NotFound,
    /// 401 or 403 (4).
    NotAllowed,
    /// No HTTP answer: connection refused, timeout, DNS or TLS failure (5).
    Unreachable,
    /// Any other 4xx: the server refused the input (6).
    Rejected,
    /// A 5xx, or an answer that is not what the API promises (7).
    Server,
}

impl ErrorKind {
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Usage => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::NotAllowed => 4,
            ErrorKind::Unreachable => 5,
            ErrorKind::Rejected => 6,
            ErrorKind::Server => 7,
        }
    }

    fn label(self) -> &'static str {
        match self {
            ErrorKind::Usage => "usage error",
            ErrorKind::NotFound => "not found",
            ErrorKind::NotAllowed => "not allowed",
            ErrorKind::Unreachable => "server unreachable",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Server => "server error",
        }
    }

    fn of_status(status: StatusCode) -> ErrorKind {
        match status.as_u16() {
            404 => ErrorKind::NotFound,
            401 | 403 => ErrorKind::NotAllowed,
            400..=499 => ErrorKind::Rejected,
            _ => ErrorKind::Server,
        }
    }
}

/// A failed command: its kind (the exit code) and a message for a person,
/// carrying the server's `message` and `requestId` when there was one.
#[derive(Debug)]
pub struct ClientError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ClientError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ClientError {
        ClientError {
            kind,
            message: message.into(),
        }
    }

    /// An answer that is not what the API promises (exit 7).
    pub fn unexpected(message: impl Into<String>) -> ClientError {
        ClientError::new(
            ErrorKind::Server,
            format!("unexpected response: {}", message.into()),
        )
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.kind.exit_code())
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.label(), self.message)
    }
}

/// The Astro `Error` envelope, as far as the CLI reads it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    message: String,
    request_id: Option<String>,
    #[serde(default)]
    field_errors: Vec<FieldError>,
}

#[derive(Deserialize)]
struct FieldError {
    field: String,
    message: String,
}

/// One request to send: a method, the path segments under the server's
/// `/v1`, query pairs and an optional JSON body.
pub struct Request {
    pub method: Method,
    pub path: Vec<String>,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl Request {
    pub fn new(method: Method, path: &[&str]) -> Request {
        Request {
            method,
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
        }
    }

    pub fn query(mut self, key: &'static str, value: impl ToString) -> Request {
        self.query.push((key, value.to_string()));
        self
    }

    /// The JSON body: one of the server's request types.
    pub fn body(mut self, body: &impl serde::Serialize) -> Request {
        self.body = Some(serde_json::to_value(body).expect("a request type serializes to JSON"));
        self
    }
}

/// A connection to one agentkey server with one credential.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    authorization: HeaderValue,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `server` with the credential in `AGENTKEY_TOKEN`.
    pub fn from_env(server: &str) -> Result<Client, ClientError> {
        let why = match std::env::var(TOKEN_ENV) {
            Ok(token) if !token.trim().is_empty() => {
                return Client::new(server, &SecretString::from(token));
            }
            Ok(_) => "is set but empty",
            Err(std::env::VarError::NotUnicode(_)) => "is not valid UTF-8",
            Err(std::env::VarError::NotPresent) => "is not set",
        };
        Err(ClientError::new(
            ErrorKind::Usage,
            format!(
                "{TOKEN_ENV} {why}: export the credential in that environment variable \
                 (it is never taken from a flag)"
            ),
        ))
    }

    pub fn new(server: &str, token: &SecretString) -> Result<Client, ClientError> {
        let base = parse_server(server)?;
        let mut authorization = HeaderValue::try_from(format!("Bearer {}", token.expose_secret()))
            .map_err(|_| {
                ClientError::new(
                    ErrorKind::Usage,
                    format!("{TOKEN_ENV} holds characters that cannot be sent in an HTTP header"),
                )
            })?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agentkey-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ClientError::new(
                    ErrorKind::Usage,
                    format!("cannot set up the HTTP client: {e}"),
                )
            })?;
        Ok(Client {
            http,
            base,
            authorization,
        })
    }

    /// The URL of `request`: the server's base, `/v1`, then each path
    /// segment percent-encoded (an id cannot reach another route).
    fn url(&self, request: &Request) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("checked in parse_server: the base URL can have a path")
            .pop_if_empty()
            .push("v1")
            .extend(&request.path);
        if !request.query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in &request.query {
                pairs.append_pair(key, value);
            }
        }
        url
    }

    /// Sends `request`; the JSON body of a 2xx answer (`None` for a 204),
    /// or the error the answer, or its absence, amounts to.
    pub async fn send(&self, request: Request) -> Result<Option<Value>, ClientError> {
        // The URL parser drops "." and ".." segments, which would turn
        // `get ..` into a list of the parent: refuse them here.
        if let Some(bad) = request
            .path
            .iter()
            .find(|s| matches!(s.as_str(), "" | "." | ".."))
        {
            return Err(ClientError::new(
                ErrorKind::Usage,
                format!("{bad:?} is not an id"),
            ));
        }
        let url = self.url(&request);
        let mut builder = self
            .http
            .request(request.method, url.clone())
            .header(AUTHORIZATION, self.authorization.clone());
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| transport_error(&e))?;
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/json"));
        let text = response.text().await.map_err(|e| transport_error(&e))?;

        if status.is_success() {
            if status == StatusCode::NO_CONTENT || text.is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text).map(Some).map_err(|e| {
                ClientError::unexpected(format!("HTTP {status} with a body that is not JSON: {e}"))
            });
        }
        Err(status_error(status, is_json, &text, request_id))
    }
}

/// Checks `--server` (or `AGENTKEY_SERVER`): an absolute http or https
/// base URL.
fn parse_server(server: &str) -> Result<Url, ClientError> {
    let usage = |why: &str| {
        ClientError::new(
            ErrorKind::Usage,
            format!(
                "server {server:?} (--server or AGENTKEY_SERVER) {why}, \
                 such as http://127.0.0.1:8080"
            ),
        )
    };
    let url = Url::parse(server).map_err(|_| usage("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(usage("must start with http:// or https://"));
    }
    if url.cannot_be_a_base() || url.query().is_some() || url.fragment().is_some() {
        return Err(usage("must be a base URL"));
    }
    Ok(url)
}

/// No HTTP answer, or none that could be read.
fn transport_error(err: &reqwest::Error) -> ClientError {
    // The innermost cause says what happened ("Connection refused", "failed
    // to lookup address information"); the layers above it only wrap it.
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let url = err.url().map(Url::as_str).unwrap_or("the server");
    if err.is_timeout() {
        return ClientError::new(
            ErrorKind::Unreachable,
            format!("no answer from {url} in time ({cause})"),
        );
    }
    if err.is_connect() {
        return ClientError::new(
            ErrorKind::Unreachable,
            format!("cannot connect to {url}: {cause}"),
        );
    }
    ClientError::new(
        ErrorKind::Server,
        format!("the exchange with {url} failed: {cause}"),
    )
}

/// A non-2xx answer: the server's `message`, its `fieldErrors` one per line,
/// and the request id, which finds the matching line in the server log.
fn status_error(
    status: StatusCode,
    is_json: bool,
    text: &str,
    header_request_id: Option<String>,
) -> ClientError {
    let kind = ErrorKind::of_status(status);
    let body = is_json
        .then(|| serde_json::from_str::<ErrorBody>(text).ok())
        .flatten();
    let Some(body) = body else {
        // Not agentkey's answer (a proxy's page, another server): exit 7,
        // whatever its status says.
        let id = header_request_id
            .map(|id| format!(" (request id {id})"))
            .unwrap_or_default();
        let message = if status.is_redirection() {
            format!("HTTP {status}: redirects are not followed; check --server{id}")
        } else {
            format!("HTTP {status} without an agentkey error body; check --server{id}")
        };
        return ClientError::unexpected(message);
    };
    let mut message = in_flags(&body.message);
    if let Some(id) = body.request_id.or(header_request_id) {
        message.push_str(&format!(" (request id {id})"));
    }
    // A single fault is usually the message itself; do not say it twice.
    for field in body
        .field_errors
        .into_iter()
        .filter(|f| f.message != body.message)
    {
        let name = flag_of(&field.field).unwrap_or(&field.field);
        message.push_str(&format!("\n  {name}: {}", in_flags(&field.message)));
    }
    ClientError::new(kind, message)
}

/// The server's request fields and the CLI flags that set them.
const FIELD_FLAGS: [(&str, &str); 8] = [
    ("tokenExpiryPeriodInDays", "--expiry-days"),
    ("gracePeriodSeconds", "--grace-seconds"),
    ("workspaceId", "--workspace"),
    ("description", "--description"),
    ("name", "--name"),
    ("limit", "--limit"),
    ("offset", "--offset"),
    ("sorts", "--sort"),
];

fn flag_of(field: &str) -> Option<&'static str> {
    FIELD_FLAGS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, flag)| *flag)
}

/// A server message about a field, said with the flag a CLI user typed:
/// `tokenExpiryPeriodInDays must be …` → `--expiry-days must be …`. Only a
/// leading field name is replaced; other words are left as the server wrote
/// them (a sort field called `name` is not the `--name` flag).
fn in_flags(message: &str) -> String {
    let end = message
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(message.len());
    match flag_of(&message[..end]) {
        Some(flag) => format!("{flag}{}", &message[end..]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors_name_the_flags() {
        let body = r#"{"message":"tokenExpiryPeriodInDays must be from 1 to 3650; got 0","requestId":"r1","statusCode":400,
            "fieldErrors":[{"field":"tokenExpiryPeriodInDays","code":"invalid","message":"tokenExpiryPeriodInDays must be from 1 to 3650; got 0"},
                           {"field":"sorts","code":"invalid","message":"invalid sort: field one of name, description"}]}"#;
        let err = status_error(StatusCode::BAD_REQUEST, true, body, None);
        assert!(
            err.message.starts_with("--expiry-days must be"),
            "{}",
            err.message
        );
        assert!(
            err.message
                .contains("\n  --sort: invalid sort: field one of name, description"),
            "{}",
            err.message
        );
        assert!(
            !err.message.contains("tokenExpiryPeriodInDays"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_answer_that_is_not_agentkeys_is_exit_7() {
        let err = status_error(StatusCode::NOT_FOUND, false, "<html>nginx</html>", None);
        assert_eq!(err.kind.exit_code(), 7, "{}", err.message);
        let err = status_error(StatusCode::NOT_FOUND, true, r#"{"detail":"nope"}"#, None);
        assert_eq!(err.kind.exit_code(), 7);
    }

    #[test]
    fn statuses_map_to_kinds() {
        let kind = |code| ErrorKind::of_status(StatusCode::from_u16(code).unwrap());
        assert_eq!(kind(404), ErrorKind::NotFound);
        assert_eq!(kind(401), ErrorKind::NotAllowed);
        assert_eq!(kind(403), ErrorKind::NotAllowed);
        assert_eq!(kind(400), ErrorKind::Rejected);
        assert_eq!(kind(413), ErrorKind::Rejected);
        assert_eq!(kind(500), ErrorKind::Server);
        assert_eq!(kind(503), ErrorKind::Server);
        assert_eq!(kind(302), ErrorKind::Server);
    }

    #[test]
    fn an_error_carries_the_message_request_id_and_field_errors() {
        let body = r#"{"message":"invalid request: check limit","requestId":"abc-1","statusCode":400,
            "fieldErrors":[{"field":"limit","code":"invalid","message":"limit must be 0..=1000"}]}"#;
        let err = status_error(StatusCode::BAD_REQUEST, true, body, None);
        assert_eq!(err.kind.exit_code(), 6);
        assert_eq!(
            err.to_string(),
            "rejected: invalid request: check limit (request id abc-1)\n  --limit: --limit must be 0..=1000"
        );
    }

    #[test]
    fn a_foreign_error_page_still_names_the_status() {
        let err = status_error(StatusCode::BAD_GATEWAY, false, "<html>", Some("r-9".into()));
        assert_eq!(err.kind.exit_code(), 7);
        assert_eq!(
            err.to_string(),
            "server error: unexpected response: HTTP 502 Bad Gateway without an agentkey error body; check --server (request id r-9)"
        );
    }

    #[test]
    fn ids_are_one_path_segment_each() {
        let client = Client::new(
            "http://example.test/prefix/",
            &SecretString::from("t".to_string()),
        )
        .unwrap();
        let request = Request::new(Method::GET, &["organizations", "../x?y#z"])
            .query("sorts", "name:asc")
            .query("sorts", "createdAt:desc");
        assert_eq!(
            client.url(&request).as_str(),
            "http://example.test/prefix/v1/organizations/..%2Fx%3Fy%23z?sorts=name%3Aasc&sorts=createdAt%3Adesc"
        );
    }

    #[test]
    fn the_server_must_be_an_http_base_url() {
        for bad in ["127.0.0.1:8080", "ftp://x", "http://x/?q=1", "not a url"] {
            let err = parse_server(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Usage, "{bad}");
        }
        assert!(parse_server("https://agentkey.example.com").is_ok());
    }

    #[test]
    fn debug_does_not_show_the_credential() {
        let client =
            Client::new("http://x", &SecretString::from("akroot_secret".to_string())).unwrap();
        assert!(!format!("{client:?}").contains("akroot_secret"));
    }
}
