//! The agent's Pyroscope pusher: profiles handed over by the agent are queued (bounded: the
//! oldest goes first) and sent on a thread of their own with Pyroscope's
//! `push.v1.PusherService/Push` RPC over the Connect protocol: an HTTP POST of the protobuf
//! `PushRequest` to `<url>/push.v1.PusherService/Push`, answered by 200 and an empty
//! `PushResponse`. What is queued goes in one request, one series per label set; a request
//! that fails for a reason that may pass (a connection error, a timeout, 429, 5xx) is retried
//! with backoff while new profiles keep queueing, one the server refuses (another 4xx) is
//! dropped.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    fs::File,
    io::Read,
    num::NonZeroUsize,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use base64::Engine;
use prost::Message;
use serde::Serialize;

use crate::error::{Error, Result};

/// The push API's messages, generated from `proto/push/v1/push.proto` and the label type it
/// imports (the generated code names it by its package path, hence the nesting).
mod proto {
    pub mod types {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/types.v1.rs"));
        }
    }
    pub mod push {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/push.v1.rs"));
        }
    }
}

use proto::{
    push::v1::{PushRequest, RawProfileSeries, RawSample},
    types::v1::LabelPair,
};

/// The RPC's path under the server's URL (Connect: `/<package>.<service>/<method>`).
const PUSH_PATH: &str = "/push.v1.PusherService/Push";
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Profiles of one request, in bytes (a request has at least one profile whatever its size):
/// what queued up during an outage goes in several requests rather than in one the server
/// refuses as too large.
const MAX_REQUEST_BYTES: usize = 4 << 20;
/// A credentials file is a line: anything much larger is the wrong file.
const MAX_CREDENTIALS_FILE: u64 = 64 << 10;
const TOKEN_ENV: &str = "GOTRACE_PUSH_TOKEN";
const BASIC_AUTH_ENV: &str = "GOTRACE_PUSH_BASIC_AUTH";

/// Pushing to Grafana Pyroscope (the agent's TOML section `[push]`). Credentials come from a
/// file or the environment (GOTRACE_PUSH_TOKEN, GOTRACE_PUSH_BASIC_AUTH as `user:password`),
/// never from a flag's value, which every user of the host can read in /proc.
#[derive(clap::Args, Serialize, Clone, Debug)]
#[command(next_help_heading = "Pushing to Pyroscope")]
pub struct PushConfig {
    /// Push memory and goroutine profiles to the Pyroscope server at URL (e.g.
    /// http://pyroscope:4040, or a Grafana Cloud Profiles URL), through $HTTPS_PROXY or
    /// $HTTP_PROXY when set; none: no pushing.
    #[arg(id = "push-url", long = "push-url", value_name = "URL", value_parser = parse_url)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file holding the bearer token to push with (else $GOTRACE_PUSH_TOKEN).
    #[arg(id = "push-token-file", long = "push-token-file", value_name = "PATH")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// A file holding a `user:password` line for basic auth (else $GOTRACE_PUSH_BASIC_AUTH);
    /// Grafana Cloud's user is the stack's numeric id, its password an access policy token.
    #[arg(
        id = "push-basic-auth-file",
        long = "push-basic-auth-file",
        value_name = "PATH"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth_file: Option<PathBuf>,
    /// The tenant of a multi-tenant Pyroscope, sent as X-Scope-OrgID.
    #[arg(id = "push-tenant-id", long = "push-tenant-id", value_name = "ID", value_parser = parse_tenant)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// At most N profiles wait to be sent (while the server is down); past that the oldest
    /// is dropped.
    #[arg(
        id = "push-queue",
        long = "push-queue",
        value_name = "N",
        default_value = "256"
    )]
    pub queue: NonZeroUsize,
    /// A push request that takes longer fails (and is retried).
    #[arg(id = "push-timeout", long = "push-timeout", value_name = "DUR", default_value = "10s", value_parser = crate::units::parse_duration)]
    #[serde(serialize_with = "crate::units::serialize_duration")]
    pub timeout: Duration,
}

crate::detect::config_defaults!(PushConfig);

/// `http://` or `https://` with a host; a trailing `/` is dropped, the RPC's path is appended.
fn parse_url(s: &str) -> Result<String, String> {
    let url = s.trim().trim_end_matches('/');
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "{s:?}: give the server's http:// or https:// URL, e.g. http://pyroscope:4040"
        ));
    }
    if uri.query().is_some() {
        return Err(format!("{s:?}: the URL takes no query string"));
    }
    Ok(url.to_string())
}

fn parse_tenant(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{s:?}: a tenant id is printable ASCII without spaces"
        ));
    }
    Ok(s.to_string())
}

/// One profile to push.
pub struct PushProfile {
    /// "memory" or "goroutine": Pyroscope's profile names (the pusher adds `__name__`).
    pub name: &'static str,
    /// service_name first, then the target's labels (pid, exe, ...).
    pub labels: Vec<(String, String)>,
    /// A gzipped pprof profile (memory: inuse_* absolute, alloc_* as deltas since the last push).
    pub pprof_gz: Vec<u8>,
}

/// The pusher's counters since it started, in profiles (`failed_attempts` in requests).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct PushStats {
    /// Accepted by the server.
    pub sent: u64,
    /// Pushed out of a full queue, refused by the server (4xx), or still queued at shutdown.
    pub dropped: u64,
    /// Requests that failed: retried, or refused.
    pub failed_attempts: u64,
    /// Waiting to be sent now.
    pub queued: u64,
}

/// Sends profiles to Pyroscope from a thread of its own; see the module's documentation.
pub struct Pusher {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a profile is queued and when the pusher is told to stop.
    wake: Condvar,
}

/// A profile waiting to be sent.
struct Queued {
    /// Tells, once a request is answered, which of its profiles are still queued.
    seq: u64,
    /// The sample's ID, the same in every attempt: a server that got a request whose answer
    /// was lost can tell the retry for what it is.
    id: String,
    name: &'static str,
    labels: Vec<(String, String)>,
    /// Shared with the requests that carry it: building one under the lock copies nothing,
    /// so that `push` never waits for more than a moment.
    pprof_gz: bytes::Bytes,
}

struct State {
    queue: VecDeque<Queued>,
    bound: usize,
    next_seq: u64,
    stats: PushStats,
    /// Set at shutdown: nothing is sent after it.
    deadline: Option<Instant>,
}

impl Shared {
    /// The worker never panics holding the lock, but a poisoned lock must not take the
    /// agent down either: the counters are still good.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Pusher {
    /// None without a URL. Reads the credentials now: a missing/unreadable/empty token file is
    /// an error naming the file (crate::Error, one clear line).
    pub fn start(config: &PushConfig) -> Result<Option<Pusher>> {
        let Some(url) = &config.url else {
            return Ok(None);
        };
        let client = Client {
            agent: ureq::Agent::config_builder()
                // Statuses are sorted out here (retry or drop), not turned into errors.
                .http_status_as_error(false)
                // A redirected POST would become a GET; the redirect is reported instead.
                .max_redirects(0)
                .user_agent(concat!("gotrace/", env!("CARGO_PKG_VERSION")))
                .build()
                .into(),
            url: url.clone(),
            endpoint: format!("{url}{PUSH_PATH}"),
            authorization: authorization(config)?,
            tenant: config.tenant_id.clone(),
            timeout: config.timeout,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                bound: config.queue.get(),
                next_seq: 0,
                stats: PushStats::default(),
                deadline: None,
            }),
            wake: Condvar::new(),
        });
        let worker = std::thread::Builder::new()
            .name("gotrace-push".into())
            .spawn({
                let shared = shared.clone();
                move || Worker::new(client).run(&shared)
            })
            .map_err(|e| Error::Other(format!("cannot start the push thread: {e}")))?;
        Ok(Some(Pusher {
            shared,
            worker: Some(worker),
        }))
    }

    /// Never blocks the caller: a full queue drops the OLDEST profile and counts it.
    pub fn push(&self, profile: PushProfile) {
        let id = uuid::Uuid::new_v4().to_string();
        let mut st = self.shared.lock();
        if st.queue.len() >= st.bound {
            st.queue.pop_front();
            st.stats.dropped += 1;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.queue.push_back(Queued {
            seq,
            id,
            name: profile.name,
            labels: profile.labels,
            pprof_gz: profile.pprof_gz.into(),
        });
        drop(st);
        self.shared.wake.notify_all();
    }

    pub fn stats(&self) -> PushStats {
        self.shared.lock().stats()
    }

    /// Sends what is queued for at most `within`, then stops (the rest counted as dropped).
    pub fn shutdown(mut self, within: std::time::Duration) -> PushStats {
        self.stop(Instant::now() + within);
        if let Some(worker) = self.worker.take() {
            // The worker gives up at the deadline (its requests' timeouts end there too).
            let _ = worker.join();
        }
        let mut st = self.shared.lock();
        st.stats.dropped += st.queue.len() as u64;
        st.queue.clear();
        st.stats()
    }

    fn stop(&self, deadline: Instant) {
        self.shared.lock().deadline = Some(deadline);
        self.shared.wake.notify_all();
    }
}

impl Drop for Pusher {
    /// Without a shutdown, nothing more is sent; the worker ends by itself (within a request's
    /// timeout) rather than holding up the caller.
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.stop(Instant::now());
        }
    }
}

impl State {
    fn stats(&self) -> PushStats {
        PushStats {
            queued: self.queue.len() as u64,
            ..self.stats
        }
    }

    fn stopped(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The request for the oldest queued profiles (up to [`MAX_REQUEST_BYTES`]): one series
    /// per (name, labels), and the sequence number of the last profile in it.
    fn batch(&self) -> (PushRequest, u64) {
        let mut request = PushRequest::default();
        let mut series_of: HashMap<SeriesKey<'_>, usize> = HashMap::new();
        let (mut bytes, mut last) = (0, 0);
        for q in &self.queue {
            if bytes > 0 && bytes + q.pprof_gz.len() > MAX_REQUEST_BYTES {
                break;
            }
            bytes += q.pprof_gz.len();
            last = q.seq;
            let i = *series_of
                .entry((q.name, q.labels.as_slice()))
                .or_insert_with(|| {
                    request.series.push(RawProfileSeries {
                        labels: labels(q),
                        samples: Vec::new(),
                    });
                    request.series.len() - 1
                });
            request.series[i].samples.push(RawSample {
                raw_profile: q.pprof_gz.clone(),
                id: q.id.clone(),
            });
        }
        (request, last)
    }

    /// Takes the profiles a request carried out of the queue (those not pushed out of it
    /// meanwhile, which were counted as dropped then), returning how many.
    fn settle(&mut self, last: u64) -> u64 {
        let mut n = 0;
        while self.queue.front().is_some_and(|q| q.seq <= last) {
            self.queue.pop_front();
            n += 1;
        }
        n
    }
}

/// What tells series apart: the profile's name and the target's labels.
type SeriesKey<'a> = (&'a str, &'a [(String, String)]);

/// A series' labels: `__name__` first, as Pyroscope's own clients send it, then the target's.
/// `__delta__="false"` tells Pyroscope the profile's values are what to store as they are:
/// the agent already turned the allocation counters into deltas.
fn labels(p: &Queued) -> Vec<LabelPair> {
    let pair = |name: &str, value: &str| LabelPair {
        name: name.to_string(),
        value: value.to_string(),
    };
    std::iter::once(pair("__name__", p.name))
        .chain(p.labels.iter().map(|(k, v)| pair(k, v)))
        .chain(std::iter::once(pair("__delta__", "false")))
        .collect()
}

/// The `Authorization` header's value, from the files the flags name or else the environment.
fn authorization(config: &PushConfig) -> Result<Option<String>> {
    let token = credential(config.token_file.as_deref(), TOKEN_ENV, "the bearer token")?;
    let basic = credential(
        config.basic_auth_file.as_deref(),
        BASIC_AUTH_ENV,
        "a `user:password` line",
    )?;
    match (token, basic) {
        (Some((_, from_token)), Some((_, from_basic))) => Err(Error::PushCredentials(format!(
            "both a bearer token ({from_token}) and basic auth ({from_basic}) are given: keep one"
        ))),
        (Some((token, _)), None) => Ok(Some(format!("Bearer {token}"))),
        (None, Some((line, from))) => {
            if line.split_once(':').is_none_or(|(user, _)| user.is_empty()) {
                return Err(Error::PushCredentials(format!(
                    "{from} holds no `user:password` line: write one into it"
                )));
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(line);
            Ok(Some(format!("Basic {encoded}")))
        }
        (None, None) => Ok(None),
    }
}

/// A credential and where it came from (for messages): the file if one is named, else the
/// environment variable if set. Either must hold one non-empty line of printable text.
fn credential(file: Option<&Path>, var: &str, what: &str) -> Result<Option<(String, String)>> {
    let (text, from) = match file {
        Some(path) => (
            read_credentials_file(path, what)?,
            path.display().to_string(),
        ),
        None => match std::env::var(var) {
            Ok(v) => (v, format!("${var}")),
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::PushCredentials(format!(
                    "${var} is not UTF-8: set it to {what}"
                )))
            }
        },
    };
    let value = text.trim();
    if value.is_empty() {
        return Err(Error::PushCredentials(format!(
            "{from} is empty: put {what} in it"
        )));
    }
    // A header value cannot hold control characters: a second line is a mistake to report,
    // not something to send.
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(Error::PushCredentials(format!(
            "{from} must hold {what} alone, on one line of printable ASCII"
        )));
    }
    Ok(Some((value.to_string(), from)))
}

/// Reads a credentials file, a regular file of a line. A symlink is followed: Kubernetes
/// mounts secrets as symlinks, and reading one discloses nothing to its author. The file is
/// opened non-blocking so that a FIFO in its place cannot hang the agent at start.
fn read_credentials_file(path: &Path, what: &str) -> Result<String> {
    let fail = |problem: String| {
        Error::PushCredentials(format!(
            "cannot read {}: {problem} (give a file holding {what})",
            path.display()
        ))
    };
    let file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("it is not a regular file".into()));
    }
    if meta.len() > MAX_CREDENTIALS_FILE {
        return Err(fail(format!(
            "{} bytes is too large for a credential",
            meta.len()
        )));
    }
    let mut text = String::new();
    file.take(MAX_CREDENTIALS_FILE)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    Ok(text)
}

struct Client {
    agent: ureq::Agent,
    /// As configured, for messages.
    url: String,
    endpoint: String,
    authorization: Option<String>,
    tenant: Option<String>,
    timeout: Duration,
}

/// How a request ended.
enum Outcome {
    Sent,
    /// Refused by the server: sending the same again would be refused again.
    Refused {
        status: u16,
        detail: String,
    },
    /// May pass: retried.
    Failed(String),
}

impl Client {
    fn send(&self, body: &[u8], timeout: Duration) -> Outcome {
        let mut request = self
            .agent
            .post(&self.endpoint)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Content-Type", "application/proto")
            // Connect's protocol version header: servers may require it of unary calls.
            .header("Connect-Protocol-Version", "1");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let mut response = match request.send(body) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let status = response.status().as_u16();
        // A Connect error's body is JSON with a message: the best explanation there is.
        let text = response
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        let detail = match response.headers().get("location") {
            Some(to) => format!(
                "redirected to {}: give --push-url the URL it redirects to",
                to.to_str().unwrap_or("?")
            ),
            None => text.trim().lines().next().unwrap_or("").to_string(),
        };
        match status {
            200..=299 => Outcome::Sent,
            429 | 500..=599 => Outcome::Failed(format!("HTTP {status} {detail}")),
            _ => Outcome::Refused { status, detail },
        }
    }
}

/// The delivery loop's own state: the backoff and what has been logged.
struct Worker {
    client: Client,
    /// Set while requests fail: the wait before the next attempt, and the failures so far.
    outage: Option<(Duration, u64)>,
    /// Refusals are logged once per status: the same refusal every interval says nothing new.
    refusals_logged: HashSet<u16>,
}

impl Worker {
    fn new(client: Client) -> Worker {
        Worker {
            client,
            outage: None,
            refusals_logged: HashSet::new(),
        }
    }

    fn run(mut self, shared: &Shared) {
        loop {
            let (request, last, timeout) = {
                let mut st = shared.lock();
                while st.queue.is_empty() && st.deadline.is_none() {
                    st = shared.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                if st.queue.is_empty() || st.stopped() {
                    return;
                }
                // A request sent at shutdown ends at its deadline.
                let left = st.deadline.map_or(self.client.timeout, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                let (request, last) = st.batch();
                (request, last, left.min(self.client.timeout))
            };
            let outcome = self.client.send(&request.encode_to_vec(), timeout);
            let mut st = shared.lock();
            match outcome {
                Outcome::Sent => {
                    let n = st.settle(last);
                    st.stats.sent += n;
                    if let Some((_, failures)) = self.outage.take() {
                        log::warn!(
                            "pushing profiles to {} works again (after {failures} failed attempts)",
                            self.client.url
                        );
                    }
                }
                Outcome::Refused { status, detail } => {
                    let n = st.settle(last);
                    st.stats.dropped += n;
                    st.stats.failed_attempts += 1;
                    if self.refusals_logged.insert(status) {
                        log::warn!(
                            "{} refused {n} profiles with HTTP {status} {detail}; such profiles are dropped, not retried (logged once per status)",
                            self.client.url
                        );
                    }
                }
                Outcome::Failed(reason) => {
                    st.stats.failed_attempts += 1;
                    let (wait, failures) = match self.outage {
                        None => {
                            log::warn!(
                                "pushing profiles to {} failed: {reason}; retrying with backoff, up to {} profiles queued meanwhile",
                                self.client.url,
                                st.bound
                            );
                            (FIRST_BACKOFF, 1)
                        }
                        Some((wait, failures)) => ((wait * 2).min(MAX_BACKOFF), failures + 1),
                    };
                    self.outage = Some((wait, failures));
                    // Jittered by ±25%: agents on many hosts that lost the same server do not
                    // come back to it in step.
                    let retry_at = Instant::now() + wait.mul_f64(0.75 + fastrand::f64() / 2.0);
                    loop {
                        let until = st.deadline.map_or(retry_at, |d| d.min(retry_at));
                        let now = Instant::now();
                        if now >= until {
                            break;
                        }
                        st = shared
                            .wake
                            .wait_timeout(st, until - now)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> PushConfig {
        use clap::{Args, FromArgMatches};
        let cmd = PushConfig::augment_args(clap::Command::new("t").no_binary_name(true));
        PushConfig::from_arg_matches(&cmd.try_get_matches_from(args).unwrap()).unwrap()
    }

    #[test]
    fn defaults_and_urls() {
        let d = PushConfig::default();
        assert_eq!(
            (d.url, d.queue.get(), d.timeout),
            (None, 256, Duration::from_secs(10))
        );
        assert_eq!(
            config(&["--push-url", "https://profiles.example.net/"])
                .url
                .as_deref(),
            Some("https://profiles.example.net")
        );
        for bad in ["pyroscope:4040", "ftp://x", "http://", "http://x/?a=1"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_tenant("a b").is_err());
    }

    /// An https URL is spoken to with TLS: the first bytes on the wire are a TLS handshake
    /// record (0x16, version 3.x), not an HTTP request nor a refusal to try.
    #[test]
    fn https_speaks_tls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        // Without TLS the pusher would never connect: the wait is bounded.
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = [0u8; 2];
            conn.read_exact(&mut head).unwrap();
            let _ = tx.send(head);
        });
        let pusher = Pusher::start(&config(&[
            "--push-url",
            &format!("https://127.0.0.1:{port}"),
        ]))
        .unwrap()
        .unwrap();
        pusher.push(PushProfile {
            name: "memory",
            labels: vec![("service_name".into(), "t".into())],
            pprof_gz: vec![1, 2, 3],
        });
        let head = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(head, Ok([0x16, 0x03]), "a TLS handshake record");
        let stats = pusher.shutdown(Duration::from_millis(100));
        assert_eq!((stats.sent, stats.dropped), (0, 1));
    }
}
