//! Verification of presented secrets: which principal a bearer credential
//! stands for, or why it is refused. Malformed secrets are refused by their
//! shape alone, before any lookup; agent tokens are looked up in the
//! [`VerifyCache`] first and in the store only on a miss.
//!
//! API tokens and the generated root credential are read from the store on
//! every use, except that an API-token digest the store did not know a
//! moment ago is remembered as unknown (the cache's negative side), so a
//! flood of one never-issued token costs one read. (A root is not: a new
//! one can be shown before it is stored, and must work as soon as it is.) That cannot hide a token created
//! later: a digest is only cached as unknown after someone presented it,
//! and a new token's secret is drawn at random when it is created, so it
//! was never presented before (and [`Verifier::issued`] drops it anyway).
//!
//! Store reads on a cache miss are bounded: at most `credential_reads` at
//! once for verification (agent tokens) and as many again for management
//! credentials, each a lane of its own, so a flood of never-issued agent
//! tokens can neither take every database connection nor keep a
//! management request waiting. A read that waits longer than
//! [`READ_WAIT`] for its turn is refused as [`VerifyError::Busy`]. And a
//! gateway's request from an address that is over its limit of failed
//! checks gets no read at all ([`Verifier::verify_agent_from`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::allowlist::{self, AllowLists};
use crate::cache::{Cached, Lookup, VerifyCache};
use crate::clock::Clock;
use crate::metrics::{Metrics, Outcome};
use crate::model::{AgentCredential, ApiCredential, SessionCredential, Subject, SubjectType};
use crate::store::revocations::{Revocation, RevocationSink};
use crate::store::{Store, StoreError};
use crate::throttle::FailureLimiter;
use crate::token::secret::{checksum_matches, parse_kind, shape_kind};
use crate::token::{Digest, SecretKind};
use crate::usage::UsageRecorder;

/// The id under which the configured (`AGENTKEY_ROOT_TOKEN`) root credential
/// appears in `createdBy`. Fixed, so nothing derived from the secret is shown.
pub const CONFIGURED_ROOT_ID: &str = "croot00000000000000000000";
pub const ROOT_NAME: &str = "root";

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The root credential: every permission in every organization.
    Root { id: String },
    /// An agent token: good for a deployment's gateway, not for management.
    Agent(AgentCredential),
    /// An organization API token: what its roles permit (see `authz`).
    ApiToken(ApiCredential),
}

impl Principal {
    /// The caller as `createdBy` / `updatedBy` show it.
    pub fn subject(&self) -> Subject {
        match self {
            Principal::Root { id } => Subject {
                id: id.clone(),
                subject_type: SubjectType::ServiceKey,
                api_token_name: Some(ROOT_NAME.to_string()),
            },
            Principal::Agent(agent) => Subject {
                id: agent.token_id.clone(),
                subject_type: SubjectType::ServiceKey,
                api_token_name: Some(agent.name.clone()),
            },
            Principal::ApiToken(token) => Subject {
                id: token.token_id.clone(),
                subject_type: SubjectType::ServiceKey,
                api_token_name: Some(token.name.clone()),
            },
        }
    }
}

/// Why a presented secret was refused. Deliberately coarse on the wire (all
/// are a 401); kept apart here for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong prefix, length, alphabet or checksum.
    Malformed,
    /// Well-formed but not issued, or deleted.
    Unknown,
    /// Issued, but its `endAt` has passed.
    Expired,
    /// Replaced by a rotation, and its grace window has ended.
    Superseded,
    /// Valid, but bound to networks the client is not in.
    AddressNotAllowed,
}

impl Refusal {
    /// How the refusal is counted: a token replaced by a rotation whose
    /// grace window has ended counts as `revoked`; a deleted token cannot be
    /// told from one never issued, and counts as `unknown`.
    pub fn outcome(self) -> Outcome {
        match self {
            Refusal::Malformed => Outcome::Malformed,
            Refusal::Unknown => Outcome::Unknown,
            Refusal::Expired => Outcome::Expired,
            Refusal::Superseded => Outcome::Revoked,
            Refusal::AddressNotAllowed => Outcome::AddressNotAllowed,
        }
    }
}

/// How long a cache miss waits for its turn to read the store.
pub const READ_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("credential refused: {0:?}")]
    Refused(Refusal),
    /// Too many store reads for credentials are waiting; try again soon.
    #[error("too many credential checks in progress")]
    Busy,
    /// Not in the cache, and the client is over its limit of failed
    /// checks: not read from the store (see [`Verifier::verify_agent_from`]).
    #[error("not checked: the client is over its failure limit")]
    Limited(crate::throttle::RetryAfter),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Verifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    usage: Arc<UsageRecorder>,
    cache: Arc<VerifyCache>,
    metrics: Arc<Metrics>,
    /// The digest of `AGENTKEY_ROOT_TOKEN`, when it is set. It then is the
    /// only root credential; a generated one in the database is ignored.
    configured_root: Option<Digest>,
    /// Turns for store reads of agent tokens on a cache miss.
    verify_reads: Semaphore,
    /// Turns for store reads of management credentials.
    manage_reads: Semaphore,
    /// Organizations' allowlists, invalidated with the cache's revocations.
    allowlists: AllowLists,
}

impl Verifier {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        usage: Arc<UsageRecorder>,
        cache: Arc<VerifyCache>,
        metrics: Arc<Metrics>,
        configured_root: Option<Digest>,
    ) -> Verifier {
        Verifier {
            allowlists: AllowLists::new(cache.positive_ttl()),
            store,
            clock,
            usage,
            cache,
            metrics,
            configured_root,
            verify_reads: Semaphore::new(DEFAULT_CREDENTIAL_READS),
            manage_reads: Semaphore::new(DEFAULT_CREDENTIAL_READS),
        }
    }

    /// At most `permits` store reads at once per lane (see the module).
    pub fn with_credential_reads(mut self, permits: usize) -> Verifier {
        self.verify_reads = Semaphore::new(permits.max(1));
        self.manage_reads = Semaphore::new(permits.max(1));
        self
    }

    /// A secret was just issued (created or rotated) with this digest:
    /// whatever was remembered of it as unknown is forgotten.
    pub fn issued(&self, digest: &Digest) {
        self.cache.forget_unknown(digest);
    }

    /// A turn to read the store, waiting at most [`READ_WAIT`].
    async fn turn<'a>(&self, lane: &'a Semaphore) -> Result<SemaphorePermit<'a>, VerifyError> {
        if let Ok(permit) = lane.try_acquire() {
            return Ok(permit);
        }
        self.metrics.credential_read_waited();
        match tokio::time::timeout(READ_WAIT, lane.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                self.metrics.credential_read_shed();
                Err(VerifyError::Busy)
            }
        }
    }

    /// Verifies an agent token for a gateway, and notes its use.
    pub async fn verify_agent(&self, presented: &str) -> Result<Arc<Cached>, VerifyError> {
        self.verify_agent_gated(presented, None).await
    }

    /// As [`Verifier::verify_agent`], for a gateway's request from `client`.
    /// While `client` is over its limit of failed checks, a token that is
    /// not in the cache is not read from the store: it is answered
    /// [`VerifyError::Limited`] at once, so a flood of never-issued tokens
    /// from one address costs no database reads. A token already verified
    /// (in the cache) is answered as always, whoever presents it.
    pub async fn verify_agent_from(
        &self,
        presented: &str,
        limits: &FailureLimiter,
        client: Option<IpAddr>,
    ) -> Result<Arc<Cached>, VerifyError> {
        self.verify_agent_gated(presented, Some((limits, client)))
            .await
    }

    async fn verify_agent_gated(
        &self,
        presented: &str,
        gate: Option<(&FailureLimiter, Option<IpAddr>)>,
    ) -> Result<Arc<Cached>, VerifyError> {
        let verified = self.check_agent(presented, gate).await;
        match &verified {
            Ok(_) => self.metrics.verification(Outcome::Valid),
            Err(VerifyError::Refused(refusal)) => self.metrics.verification(refusal.outcome()),
            Err(VerifyError::Store(_) | VerifyError::Busy | VerifyError::Limited(_)) => {}
        }
        verified
    }

    async fn check_agent(
        &self,
        presented: &str,
        gate: Option<(&FailureLimiter, Option<IpAddr>)>,
    ) -> Result<Arc<Cached>, VerifyError> {
        if shape_kind(presented) != Some(SecretKind::Agent) {
            return Err(VerifyError::Refused(Refusal::Malformed));
        }
        let digest = Digest::of(presented);
        let now = self.clock.now();
        // The checksum is checked only on a miss: an entry of either kind
        // is only ever made for a digest read after its checksum matched,
        // so a hit needs no second look, and the cheapest answers stay so.
        let entry = match self.cache.lookup(&digest, now) {
            Lookup::Hit(entry) => {
                self.metrics.cache_hit();
                entry
            }
            Lookup::KnownUnknown => {
                self.metrics.cache_known_unknown();
                return Err(VerifyError::Refused(Refusal::Unknown));
            }
            Lookup::Miss if !checksum_matches(presented) => {
                return Err(VerifyError::Refused(Refusal::Malformed));
            }
            Lookup::Miss => {
                if let Some((limits, client)) = gate {
                    limits.check(client).map_err(VerifyError::Limited)?;
                }
                self.metrics.cache_miss();
                let epoch = self.cache.epoch();
                let _turn = self.turn(&self.verify_reads).await?;
                match self.store.find_agent_credential(&digest).await? {
                    Some(credential) => self.cache.insert(digest, credential, now, epoch),
                    None => {
                        self.cache.insert_unknown(digest, now, epoch);
                        return Err(VerifyError::Refused(Refusal::Unknown));
                    }
                }
            }
        };
        let credential = &entry.credential;
        if credential.end_at.is_some_and(|end| now >= end) {
            return Err(VerifyError::Refused(Refusal::Expired));
        }
        if credential.grace_until.is_some_and(|end| now >= end) {
            return Err(VerifyError::Refused(Refusal::Superseded));
        }
        // A token without networks pays for one length check; one with
        // them for a walk over its few parsed networks, never a read.
        if !credential.allowed_networks.is_empty()
            && !allowlist::allows(&credential.allowed_networks, gate.and_then(|(_, ip)| ip))
        {
            return Err(VerifyError::Refused(Refusal::AddressNotAllowed));
        }
        if entry.mark_used(now) {
            self.usage.touch(&credential.token_id, now);
        }
        Ok(entry)
    }

    pub fn cache(&self) -> &VerifyCache {
        &self.cache
    }

    pub fn allowlists(&self) -> &AllowLists {
        &self.allowlists
    }

    /// The networks organization `org`'s management API may be called
    /// from (empty: anywhere), from memory unless a change made them stale.
    pub async fn organization_networks(
        &self,
        org: &str,
    ) -> Result<std::sync::Arc<[ipnet::IpNet]>, StoreError> {
        self.allowlists
            .networks(self.store.as_ref(), org, self.clock.now())
            .await
    }

    /// Identifies the caller of the management API.
    pub async fn authenticate(&self, presented: &str) -> Result<Principal, VerifyError> {
        if let Some(configured) = &self.configured_root {
            // The configured root token is any string of 32+ characters, so
            // it is recognised by digest, not by shape.
            if Digest::of(presented).ct_eq(configured) {
                return Ok(Principal::Root {
                    id: CONFIGURED_ROOT_ID.to_string(),
                });
            }
        }
        match parse_kind(presented) {
            Some(SecretKind::Agent) => {
                let entry = self.verify_agent(presented).await?;
                Ok(Principal::Agent(entry.credential.clone()))
            }
            // Without a configured root, a root credential is the stored one.
            Some(SecretKind::Root) if self.configured_root.is_none() => {
                self.authenticate_digest(SessionCredential::Root, &Digest::of(presented))
                    .await
            }
            Some(SecretKind::Root) => Err(VerifyError::Refused(Refusal::Unknown)),
            Some(SecretKind::Api) => {
                self.authenticate_digest(SessionCredential::ApiToken, &Digest::of(presented))
                    .await
            }
            None => Err(VerifyError::Refused(Refusal::Malformed)),
        }
    }

    /// Identifies a management credential known only by its digest: a
    /// presented one's, or a console session's, which is checked again on
    /// every request, so a deleted, rotated or expired credential ends the
    /// session at once.
    pub async fn authenticate_digest(
        &self,
        kind: SessionCredential,
        digest: &Digest,
    ) -> Result<Principal, VerifyError> {
        match kind {
            SessionCredential::Root => match &self.configured_root {
                Some(configured) if configured.ct_eq(digest) => Ok(Principal::Root {
                    id: CONFIGURED_ROOT_ID.to_string(),
                }),
                // A configured root is then the only root credential.
                Some(_) => Err(VerifyError::Refused(Refusal::Unknown)),
                // Not remembered as unknown: a new root can be shown before
                // it is stored (`root-token --rotate`, recovery), and must
                // work as soon as it is. The read is one row, in its lane.
                None => match self.stored_root().await? {
                    Some(root) if root.secret_digest.ct_eq(digest) => {
                        Ok(Principal::Root { id: root.id })
                    }
                    _ => Err(VerifyError::Refused(Refusal::Unknown)),
                },
            },
            SessionCredential::ApiToken => self.authenticate_api_token(digest).await,
        }
    }

    /// An API token is read from the store on every request (management
    /// calls are not the hot path), so a delete, a rotation or a change of
    /// roles takes effect on the very next request, on every replica. Only
    /// the answer "unknown" is remembered.
    async fn authenticate_api_token(&self, digest: &Digest) -> Result<Principal, VerifyError> {
        let epoch = self.known_unknown(digest)?;
        let found = {
            let _turn = self.turn(&self.manage_reads).await?;
            self.store.find_api_credential(digest).await?
        };
        let Some(credential) = found else {
            self.cache.insert_unknown(*digest, self.clock.now(), epoch);
            return Err(VerifyError::Refused(Refusal::Unknown));
        };
        if credential.end_at.is_some_and(|end| self.clock.now() >= end) {
            return Err(VerifyError::Refused(Refusal::Expired));
        }
        Ok(Principal::ApiToken(credential))
    }
}

impl Verifier {
    /// The stored root credential, read in the management lane.
    async fn stored_root(&self) -> Result<Option<crate::model::RootCredential>, VerifyError> {
        self.metrics.credential_lookup();
        let _turn = self.turn(&self.manage_reads).await?;
        Ok(self.store.root_credential().await?)
    }

    /// Refuses an API token remembered as unknown; otherwise
    /// answers the cache epoch to hand to `insert_unknown` after the read.
    fn known_unknown(&self, digest: &Digest) -> Result<u64, VerifyError> {
        if self.cache.is_known_unknown(digest, self.clock.now()) {
            self.metrics.credential_known_unknown();
            return Err(VerifyError::Refused(Refusal::Unknown));
        }
        self.metrics.credential_lookup();
        Ok(self.cache.epoch())
    }
}

/// How many store reads for credentials run at once per lane, by default.
pub const DEFAULT_CREDENTIAL_READS: usize = 4;

/// Revocations reach the cache through the verifier: those this process
/// makes (from the handlers) and those of other replicas (from the store).
/// Either way the token's cached secrets are read again on their next use.
impl RevocationSink for Verifier {
    fn revoked(&self, revocation: Revocation) {
        match revocation {
            Revocation::Token(id) => self.cache.forget_token(&id),
            Revocation::Deployment(id) => self.cache.forget_deployment(&id),
            Revocation::AllowList(org) => self.allowlists.forget(&org),
        }
    }

    fn following(&self, live: bool) {
        self.cache.set_enabled(live);
        self.allowlists.set_enabled(live);
    }
}
