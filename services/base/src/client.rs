//! Outgoing gRPC: one shared, lazily connected `Channel` per upstream (cheap to clone, multiplexed),
//! and an interceptor that adds the caller's service token and the current W3C trace context.

use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::metadata::{AUTHORIZATION, IDEMPOTENCY_KEY, SERVICE_TOKEN};

/// A channel that connects on first use and reconnects by itself; every call gets `timeout` as
/// its deadline unless the request sets a shorter one.
pub fn channel(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Ok(crate::app_tls::endpoint(url, None)?
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        // Generous: a peer starved of CPU under overload answers pings late, and a connection
        // closed for that fails every request in flight on it.
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// A channel over one or more endpoints (`url` may list several, comma-separated): calls are
/// balanced per request across them, so replicas behind a headless Service (or listed by hand)
/// share the load. When a URL's host is a name (not an address) and re-resolution is on
/// ([`set_resolve_interval`], `upstreams.resolve_interval_ms`), the name is resolved again
/// periodically and after a call fails in transport, and the channel follows the addresses it
/// returns (see [`discovered_channel`]); otherwise the list is fixed, each entry resolved when it
/// connects.
pub fn balanced_channel(urls: &str, timeout: Duration) -> anyhow::Result<Channel> {
    let list: Vec<&str> = urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if resolve_interval().is_some() && list.iter().any(|u| names_a_host(u)) {
        return discovered_channel(&list, timeout);
    }
    if list.len() <= 1 {
        return channel(list.first().copied().unwrap_or(urls), timeout);
    }
    let endpoints = list
        .into_iter()
        .map(|u| {
            Ok(crate::app_tls::endpoint(u, None)?
                .connect_timeout(Duration::from_secs(2))
                .timeout(timeout)
                .tcp_nodelay(true))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}

// ------------------------------------------------------------------ balancing that follows DNS

/// Re-resolution period in milliseconds; 0: off.
static RESOLVE_INTERVAL_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_RESOLVE_INTERVAL_MS);
/// The default period: a pod added by a scale-out gets calls within this long.
pub const DEFAULT_RESOLVE_INTERVAL_MS: u64 = 5000;

/// How often every discovered channel of this process resolves its names again (0: never;
/// channels made then are fixed, as before). Services set it from `upstreams.resolve_interval_ms`
/// at start-up; channels already made follow a change from their next round.
pub fn set_resolve_interval(every: Duration) {
    RESOLVE_INTERVAL_MS.store(
        u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
}

fn resolve_interval() -> Option<Duration> {
    match RESOLVE_INTERVAL_MS.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// What a host name resolves to. The process has one ([`set_resolver`]); the default asks the
/// system's resolver (in Kubernetes: CoreDNS, which answers a headless Service's name with its
/// ready pods' addresses). The seam lets a test decide what a name resolves to.
#[async_trait::async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// The addresses of `host`, each with `port` (an A record carries no port).
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>>;
}

/// The system's resolver (`getaddrinfo`, through tokio).
pub struct SystemResolver;

#[async_trait::async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<std::net::SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

static RESOLVER: std::sync::RwLock<Option<std::sync::Arc<dyn Resolve>>> =
    std::sync::RwLock::new(None);

/// Replaces the process's resolver (tests).
pub fn set_resolver(resolver: std::sync::Arc<dyn Resolve>) {
    if let Ok(mut r) = RESOLVER.write() {
        *r = Some(resolver);
    }
}

fn resolver() -> std::sync::Arc<dyn Resolve> {
    RESOLVER
        .read()
        .ok()
        .and_then(|r| r.clone())
        .unwrap_or_else(|| std::sync::Arc::new(SystemResolver))
}

/// Wakes every discovered channel to resolve its names now (a call failed in transport: a
/// replica may be gone, or new ones there).
static RESOLVE_NOW: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Asks every discovered channel of this process to resolve its names again now.
pub fn resolve_again() {
    RESOLVE_NOW.notify_waiters();
}

/// True when `url`'s host is a name rather than an IP address (`localhost` aside: it names this
/// machine, whose IPv4 and IPv6 loopbacks a server seldom both listens on).
fn names_a_host(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .is_some_and(|h| {
            h.trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_err()
                && !h.eq_ignore_ascii_case("localhost")
        })
}

/// One name to follow: its scheme, host and port.
struct Target {
    scheme: String,
    host: String,
    port: u16,
}

/// A channel balanced per request over every address the URLs' names resolve to, kept current:
/// a task resolves each name every [`set_resolve_interval`] (and at once after
/// [`resolve_again`]), inserts the addresses that appeared into tonic's balanced channel
/// (`Channel::balance_channel`, tower's discovery) and removes the ones that went, so a
/// scale-out's new pods get calls within one period and a removed pod is drained of new ones.
/// A failed or empty answer keeps what the name had (a DNS hiccup must not empty the set). URLs
/// given as addresses are fixed members. The task ends when the channel is dropped. The
/// `grpc_client_endpoints{upstream="host:port"}` gauge counts what a name has now.
pub fn discovered_channel(urls: &[&str], timeout: Duration) -> anyhow::Result<Channel> {
    let mut targets = Vec::new();
    for url in urls {
        let uri: http::Uri = url.parse()?;
        let scheme = uri.scheme_str().unwrap_or("http").to_owned();
        let host = uri
            .host()
            .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        targets.push(Target { scheme, host, port });
    }
    // An address found for a name is dialled by address, its certificate checked against the
    // name (with gRPC TLS on).
    let endpoint = move |scheme: &str, name: &str, addr: std::net::SocketAddr| {
        Ok::<_, anyhow::Error>(
            crate::app_tls::endpoint(&format!("{scheme}://{addr}"), Some(name))?
                .connect_timeout(Duration::from_secs(2))
                .timeout(timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(20))
                .keep_alive_while_idle(true),
        )
    };
    let (channel, changes) = Channel::balance_channel::<std::net::SocketAddr>(64);
    tokio::spawn(async move {
        use std::collections::{BTreeSet, HashMap};
        use tonic::transport::channel::Change;
        // What each name resolved to last; the channel holds their union.
        let mut known: HashMap<usize, BTreeSet<std::net::SocketAddr>> = HashMap::new();
        let mut members: BTreeSet<std::net::SocketAddr> = BTreeSet::new();
        loop {
            let resolver = resolver();
            for (i, t) in targets.iter().enumerate() {
                let addrs = match t.host.parse::<std::net::IpAddr>() {
                    Ok(ip) => Ok(vec![std::net::SocketAddr::new(ip, t.port)]),
                    Err(_) => resolver.resolve(&t.host, t.port).await,
                };
                match addrs {
                    Ok(a) if !a.is_empty() => {
                        known.insert(i, a.into_iter().collect());
                    }
                    Ok(_) => {
                        tracing::warn!(host = %t.host, "resolved to no address; keeping the last ones")
                    }
                    Err(e) => {
                        tracing::warn!(host = %t.host, error = %e, "cannot resolve; keeping the last addresses")
                    }
                }
                metrics::gauge!("grpc_client_endpoints", "upstream" => format!("{}:{}", t.host, t.port))
                    .set(known.get(&i).map_or(0, BTreeSet::len) as f64);
            }
            let now: BTreeSet<_> = known.values().flatten().copied().collect();
            for gone in members.difference(&now) {
                tracing::info!(addr = %gone, "upstream address gone: draining it");
                if changes.send(Change::Remove(*gone)).await.is_err() {
                    return;
                }
            }
            for new in now.difference(&members) {
                let Some((_, t)) = targets
                    .iter()
                    .enumerate()
                    .find(|(i, _)| known.get(i).is_some_and(|a| a.contains(new)))
                else {
                    continue;
                };
                let Ok(e) = endpoint(&t.scheme, &t.host, *new) else {
                    continue;
                };
                tracing::info!(addr = %new, "upstream address added");
                if changes.send(Change::Insert(*new, e)).await.is_err() {
                    return;
                }
            }
            members = now;
            let every =
                resolve_interval().unwrap_or(Duration::from_millis(DEFAULT_RESOLVE_INTERVAL_MS));
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = RESOLVE_NOW.notified() => {}
                _ = changes.closed() => return,
            }
        }
    });
    Ok(channel)
}

/// Adds `x-service-token` and `traceparent` to every outgoing request, and `grpc-timeout` (the
/// channel's deadline) when the request has none, so the callee drops work its caller gave up.
#[derive(Clone)]
pub struct Outgoing {
    service_token: Option<MetadataValue<Ascii>>,
    deadline: Option<Duration>,
}

impl Outgoing {
    pub fn new(service_token: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            service_token: service_token.map(MetadataValue::try_from).transpose()?,
            deadline: None,
        })
    }

    /// Tells callees the deadline (the channel's `timeout`): `grpc-timeout` on every request
    /// that does not carry a shorter one of its own.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

impl tonic::service::Interceptor for Outgoing {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        crate::telemetry::inject_into_metadata(req.metadata_mut());
        if let Some(token) = &self.service_token {
            req.metadata_mut().insert(SERVICE_TOKEN, token.clone());
        }
        // The shorter of the channel's deadline and what is left of our own caller's.
        let deadline = match (self.deadline, crate::deadline::remaining()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(d) = deadline {
            if req.metadata().get("grpc-timeout").is_none() {
                req.set_timeout(d);
            }
        }
        Ok(req)
    }
}

pub type Intercepted = InterceptedService<Channel, Outgoing>;

/// The transport of a client of another of our services: a channel balanced over `urls`
/// (comma-separated replicas) whose every call carries `timeout_ms` as its deadline, this
/// service's token and the trace context. `XServiceClient::new(upstream(..)?)`.
pub fn upstream(
    urls: &str,
    timeout_ms: u64,
    auth: &crate::config::AuthClientSettings,
) -> anyhow::Result<Intercepted> {
    use secrecy::ExposeSecret;
    let timeout = Duration::from_millis(timeout_ms);
    let token = auth.service_token.as_ref().map(|t| t.expose_secret());
    Ok(InterceptedService::new(
        balanced_channel(urls, timeout)?,
        Outgoing::new(token)?.with_deadline(timeout),
    ))
}

/// Wraps a message with the end user's token and an idempotency key.
pub fn request<T>(
    message: T,
    user_token: Option<&str>,
    idempotency_key: Option<&str>,
) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(t) = user_token {
        if let Ok(v) = MetadataValue::try_from(format!("Bearer {t}")) {
            req.metadata_mut().insert(AUTHORIZATION, v);
        }
    }
    if let Some(k) = idempotency_key {
        if let Ok(v) = MetadataValue::try_from(k) {
            req.metadata_mut().insert(IDEMPOTENCY_KEY, v);
        }
    }
    req
}

/// True when a call failed in transport — no answer of ours came back (a refused or reset
/// connection arrives as `UNAVAILABLE` or `UNKNOWN` without TraceTrack's `ErrorInfo`). Our own
/// answers, load shedding (`RESOURCE_EXHAUSTED`) and deadlines are never transport failures.
pub fn is_transport_failure(status: &Status) -> bool {
    use tonic_types::StatusExt;
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) && status
        .get_error_details()
        .error_info()
        .is_none_or(|i| i.domain != tracetrack_domain::error::ERROR_DOMAIN)
}

/// Makes a call, and makes it once more when the first attempt failed in transport (a replica
/// or a connection died under it): the balanced channel sends the retry on another connection,
/// to another replica where there is one. Only for idempotent calls — reads, and mutations that
/// carry an idempotency key (a retry of one that did land returns its first answer). `call`
/// builds a fresh request each time.
pub async fn retry_transport<T, F, Fut>(mut call: F) -> Result<tonic::Response<T>, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    match call().await {
        Err(s) if is_transport_failure(&s) => {
            metrics::counter!("grpc_client_transport_retries_total").increment(1);
            // A replica may be gone (or new ones there): discovered channels look again now.
            resolve_again();
            tracing::debug!(error = %s, "transport failure; retrying once");
            call().await
        }
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_once_on_transport_failures_only() {
        let calls = std::sync::atomic::AtomicU32::new(0);
        let attempt = |status: Status| {
            let calls = &calls;
            move || {
                let status = status.clone();
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        Err(status)
                    } else {
                        Ok(tonic::Response::new(()))
                    }
                }
            }
        };
        assert!(
            retry_transport(attempt(Status::unavailable("tcp connect error")))
                .await
                .is_ok()
        );
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 2);
        assert!(
            retry_transport(attempt(Status::unknown("connection reset")))
                .await
                .is_ok()
        );
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 2);
        // Our own answers and shedding are not retried.
        let ours: Status =
            crate::AppError::unavailable("the database", anyhow::anyhow!("down")).into();
        assert!(retry_transport(attempt(ours)).await.is_err());
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
        assert!(retry_transport(attempt(Status::resource_exhausted("shed")))
            .await
            .is_err());
        assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
    }
}
