//! Console sessions: signing in with a management credential, the session
//! cookie, its idle and absolute limits, and the CSRF checks every form
//! passes. The browser holds the session id; the store keeps its digest and
//! the digest of the credential that signed in, which is verified again on
//! every request (so deleting, rotating or expiring it ends the session).

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::Console;
use crate::model::{ConsoleSession, SessionCredential};
use crate::store::SessionCutoffs;
use crate::token::secret::hex;
use crate::token::Digest;
use crate::verify::{Principal, VerifyError};

/// The session cookie's name over plain http, and over https, where the
/// `__Host-` prefix makes browsers refuse one set by any other host (a
/// sibling subdomain cannot plant a session).
pub const COOKIE: &str = "agentkey_session";
pub const SECURE_COOKIE: &str = "__Host-agentkey_session";

/// How long sessions last, and how the console is reached.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A session unused for this long has ended.
    pub idle_timeout: Duration,
    /// A session older than this has ended, however busy.
    pub lifetime: Duration,
    /// The console's public origin (`https://agentkey.example.com`), when
    /// it is served behind a proxy; cookies are `Secure` when it is https.
    pub public_origin: Option<String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            idle_timeout: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 60 * 60),
            public_origin: None,
        }
    }
}

impl SessionSettings {
    fn cutoffs(&self, now: i64) -> SessionCutoffs {
        SessionCutoffs {
            created_before: now - self.lifetime.as_secs() as i64,
            seen_before: now - self.idle_timeout.as_secs() as i64,
        }
    }

    fn secure(&self) -> bool {
        self.public_origin
            .as_deref()
            .is_some_and(|o| o.starts_with("https://"))
    }

    fn cookie_name(&self) -> &'static str {
        if self.secure() {
            SECURE_COOKIE
        } else {
            COOKIE
        }
    }
}

/// A `last_seen_at` younger than this is not written again: a page with
/// several requests costs one write, and idleness is still measured to
/// within a minute.
const TOUCH_EVERY_SECONDS: i64 = 60;

/// A signed-in request: who it is, and the session's CSRF token.
pub struct SignedIn {
    pub principal: Principal,
    pub session: Digest,
    pub csrf: String,
}

/// Why a request has no session: the browser is sent to sign in.
pub struct SignInFirst {
    /// Where to come back to (a path of this console).
    next: Option<String>,
    /// Whether a stale cookie should be removed.
    clear: bool,
    settings: SessionSettings,
}

impl IntoResponse for SignInFirst {
    fn into_response(self) -> Response {
        let to = match self.next {
            Some(next) => format!("/console/sign-in?next={}", urlencode(&next)),
            None => "/console/sign-in".to_string(),
        };
        let mut response = Redirect::to(&to).into_response();
        if self.clear {
            response
                .headers_mut()
                .insert(header::SET_COOKIE, clear_cookie(&self.settings));
        }
        response
    }
}

impl FromRequestParts<Console> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let settings = &console.state.settings.console;
        let next = (parts.method == axum::http::Method::GET)
            .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_string()))
            .flatten();
        let refuse = |clear| SignInFirst {
            next: next.clone(),
            clear,
            settings: settings.clone(),
        };
        let Some(id) = session_cookie(&parts.headers, settings.cookie_name()) else {
            return Err(refuse(false).into_response());
        };
        // A cookie that names no session is a failed credential check
        // like any other: counted per address, and over the limit not even
        // looked up (a flood of made-up cookies costs no database reads).
        let client = crate::http::client_ip::of(parts, &console.state);
        let failures = &console.state.auth_failures;
        if let Err(retry) = failures.check(client) {
            return Err(super::pages::too_many(retry));
        }
        let id_digest = Digest::of(id.expose_secret());
        let store = &console.state.store;
        let now = console.state.clock.now();
        let session = store
            .find_console_session(&id_digest)
            .await
            .map_err(|e| super::pages::store_failure(e.into()))?;
        let Some(session) = session else {
            return Err(match failures.failed(client) {
                Ok(()) => refuse(true).into_response(),
                Err(retry) => super::pages::too_many(retry),
            });
        };
        let cutoffs = settings.cutoffs(now);
        if session.created_at <= cutoffs.created_before
            || session.last_seen_at <= cutoffs.seen_before
        {
            let _ = store.delete_console_session(&id_digest).await;
            return Err(refuse(true).into_response());
        }
        let principal = match console
            .state
            .verifier
            .authenticate_digest(session.credential, &session.credential_digest)
            .await
        {
            Ok(principal) => principal,
            Err(VerifyError::Refused(_)) => {
                // The credential was deleted, rotated or has expired.
                let _ = store.delete_console_session(&id_digest).await;
                return Err(refuse(true).into_response());
            }
            Err(VerifyError::Store(e)) => return Err(super::pages::store_failure(e.into())),
            // Too busy to check now: the session stays, the page says so.
            Err(VerifyError::Busy | VerifyError::Limited(_)) => {
                return Err(super::pages::busy());
            }
        };
        // Often enough that idleness is measured to within half the idle
        // timeout, however short that is set.
        let touch_every = TOUCH_EVERY_SECONDS.min(settings.idle_timeout.as_secs() as i64 / 2);
        if now - session.last_seen_at >= touch_every {
            store
                .touch_console_session(&id_digest, now)
                .await
                .map_err(|e| super::pages::store_failure(e.into()))?;
        }
        Ok(SignedIn {
            principal,
            session: id_digest,
            csrf: csrf_token(&id),
        })
    }
}

impl SignedIn {
    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, presented: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// The kind of session a principal may have: none for an agent token,
/// which is for gateways, not for managing anything.
pub fn credential_of(principal: &Principal) -> Option<SessionCredential> {
    match principal {
        Principal::Root { .. } => Some(SessionCredential::Root),
        Principal::ApiToken(_) => Some(SessionCredential::ApiToken),
        Principal::Agent(_) => None,
    }
}

/// Starts a session for a credential with this digest; answers the
/// `Set-Cookie` header that hands it to the browser.
pub async fn start(
    console: &Console,
    credential: SessionCredential,
    credential_digest: Digest,
) -> Result<HeaderValue, crate::store::StoreError> {
    let id = new_session_id();
    let now = console.state.clock.now();
    let settings = &console.state.settings.console;
    let session = ConsoleSession {
        id_digest: Digest::of(id.expose_secret()),
        credential,
        credential_digest,
        created_at: now,
        last_seen_at: now,
    };
    console
        .state
        .store
        .create_console_session(&session, settings.cutoffs(now))
        .await?;
    let secure = if settings.secure() { "; Secure" } else { "" };
    let cookie = format!(
        "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        settings.cookie_name(),
        id.expose_secret(),
        settings.lifetime.as_secs()
    );
    Ok(HeaderValue::from_str(&cookie).expect("a hex session id is a valid header value"))
}

/// Ends the session the request carries, if any; answers the header that
/// removes the cookie.
pub async fn end(console: &Console, headers: &HeaderMap) -> HeaderValue {
    let settings = &console.state.settings.console;
    if let Some(id) = session_cookie(headers, settings.cookie_name()) {
        if let Err(err) = console
            .state
            .store
            .delete_console_session(&Digest::of(id.expose_secret()))
            .await
        {
            tracing::warn!(error = %err, "could not delete a console session");
        }
    }
    clear_cookie(settings)
}

fn clear_cookie(settings: &SessionSettings) -> HeaderValue {
    let secure = if settings.secure() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}",
        settings.cookie_name()
    ))
    .expect("a static cookie is a valid header value")
}

/// 256 bits from the OS CSPRNG, as 64 hex characters.
fn new_session_id() -> SecretString {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    SecretString::from(hex(&bytes))
}

/// The session's CSRF token: derived from the session id, which only the
/// browser holds, so it needs no storage and cannot be guessed from the
/// stored digest.
fn csrf_token(session_id: &SecretString) -> String {
    let mut hash = Sha256::new();
    hash.update(b"agentkey console csrf\0");
    hash.update(session_id.expose_secret().as_bytes());
    hex(&hash.finalize())
}

/// The session id of the request's cookie `name`, if it has exactly one,
/// well-formed. Two are refused: one of them was planted.
fn session_cookie(headers: &HeaderMap, name: &str) -> Option<SecretString> {
    let mut values = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value);
    let value = values.next()?;
    let well_formed = value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit());
    (well_formed && values.next().is_none()).then(|| SecretString::from(value.to_string()))
}

/// Whether a state-changing request comes from the console's own pages:
/// the browser's `Origin` must be the console's, or, where the browser
/// withholds it (`Origin: null`, which `Referrer-Policy: no-referrer` makes
/// browsers send), its `Sec-Fetch-Site` must say `same-origin`. Together
/// with the CSRF token in every form this refuses forged cross-site posts.
pub fn same_origin(headers: &HeaderMap, settings: &SessionSettings) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).map(|o| o.to_str()) {
        Some(Ok("null")) => fetch_site == Some("same-origin"),
        Some(Ok(origin)) => match &settings.public_origin {
            Some(public) => origin.eq_ignore_ascii_case(public.trim_end_matches('/')),
            None => headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| {
                    origin
                        .strip_prefix("http://")
                        .or_else(|| origin.strip_prefix("https://"))
                        .is_some_and(|o| o.eq_ignore_ascii_case(host))
                }),
        },
        Some(Err(_)) => false,
        // No Origin at all: not a browser that could be led to post here
        // from another site (browsers send Origin on every POST), unless its
        // fetch metadata says otherwise; the CSRF token still holds.
        None => matches!(fetch_site, None | Some("same-origin" | "none")),
    }
}

pub fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s[1..].to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_well_formed_session_cookies() {
        let mut headers = HeaderMap::new();
        let id = "a".repeat(64);
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={id}")).unwrap(),
        );
        assert_eq!(
            session_cookie(&headers, COOKIE).unwrap().expose_secret(),
            id
        );
        assert!(session_cookie(&headers, SECURE_COOKIE).is_none());
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE}=zz{}", "a".repeat(62))).unwrap(),
        );
        assert!(session_cookie(&headers, COOKIE).is_none());
        let planted = format!("{COOKIE}={}; {COOKIE}={}", "a".repeat(64), "b".repeat(64));
        headers.insert(header::COOKIE, HeaderValue::from_str(&planted).unwrap());
        assert!(
            session_cookie(&headers, COOKIE).is_none(),
            "two: one was planted"
        );
    }

    #[test]
    fn origin_must_match_the_host_or_the_public_url() {
        let settings = SessionSettings::default();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(
            same_origin(&headers, &settings),
            "no Origin, no fetch metadata"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin(&headers, &settings));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&headers, &settings));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(
            !same_origin(&headers, &settings),
            "null needs fetch metadata"
        );
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_origin(&headers, &settings));
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers, &settings));
        headers.remove(header::ORIGIN);
        assert!(!same_origin(&headers, &settings));
        let public = SessionSettings {
            public_origin: Some("https://keys.example".into()),
            ..SessionSettings::default()
        };
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://keys.example"),
        );
        assert!(same_origin(&headers, &public));
        assert!(public.secure());
    }

    #[test]
    fn csrf_tokens_differ_per_session() {
        let a = csrf_token(&SecretString::from("a".repeat(64)));
        let b = csrf_token(&SecretString::from("b".repeat(64)));
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }
}
