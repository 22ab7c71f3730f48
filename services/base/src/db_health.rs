//! A service's database as requests see it: whether it answers (the circuit of
//! `tracetrack_common::server`'s readiness loop), kept per service for the call being served.
//! No database here — just the flag and the task-local that scopes it.

/// Whether a service's database answers, as its readiness loop last saw it — and a circuit:
/// while it does not, the service's calls are refused at once with `unavailable` (see
/// `shed::ShedLayer`) instead of each waiting out the pool's acquire timeout. A request that
/// meets a lost or refused connection opens it at once ([`trip`]) and asks the readiness loop
/// to look again now, which closes it as soon as the database answers.
#[derive(Clone, Debug)]
pub struct Health(std::sync::Arc<HealthInner>);

#[derive(Debug)]
struct HealthInner {
    answers: std::sync::atomic::AtomicBool,
    recheck: tokio::sync::Notify,
}

impl Default for Health {
    /// Answering until a check says otherwise.
    fn default() -> Self {
        Self(std::sync::Arc::new(HealthInner {
            answers: std::sync::atomic::AtomicBool::new(true),
            recheck: tokio::sync::Notify::new(),
        }))
    }
}

impl Health {
    pub fn answers(&self) -> bool {
        self.0.answers.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self, ok: bool) {
        self.0
            .answers
            .store(ok, std::sync::atomic::Ordering::Relaxed);
    }

    /// A request found the database gone: refuse the next ones, and check again now.
    pub fn trip(&self) {
        if self
            .0
            .answers
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!("database connection lost: refusing calls until it answers again");
            metrics::counter!("db_circuit_trips_total").increment(1);
        }
        self.0.recheck.notify_one();
    }

    /// Resolves when a request tripped the circuit (the readiness loop then checks at once).
    pub async fn recheck_requested(&self) {
        self.0.recheck.notified().await;
    }
}

tokio::task_local! {
    /// The database health of the service whose call is being served (a process may hold
    /// several services: the tests run them side by side).
    static SERVED_DB: Option<Health>;
}

/// Runs `fut` (a call being served) with `health` as its database's: [`answers`] and [`trip`]
/// inside it speak of that database.
pub fn serving<F: std::future::Future>(
    health: Option<Health>,
    fut: F,
) -> impl std::future::Future<Output = F::Output> {
    SERVED_DB.scope(health, fut)
}

/// Whether the database of the call being served answered its last health check: tells a busy
/// pool (overloaded) from an outage. Outside a call (relays, consumers): true.
pub fn answers() -> bool {
    SERVED_DB
        .try_with(|h| h.as_ref().is_none_or(Health::answers))
        .unwrap_or(true)
}

/// The call being served found its database gone (see [`Health::trip`]).
pub fn trip() {
    let _ = SERVED_DB.try_with(|h| h.as_ref().map(Health::trip));
}
