//! Deliveries of bridged users, driven by the gateway's announcements: no long-poll per user.
//!
//! The gateway announces the client IDs that have new deliveries (a broadcast of bounded
//! capacity); the runner maps each to its bridged user, fetches and processes what is waiting,
//! hands the events to the bridge, commits what changed (MLS state, cursor, the bridge's rows)
//! in one transaction and only then acknowledges. One worker per user at a time; a wake for a
//! user being processed makes it go round again. When announcements were missed (the
//! broadcast lagged) and at start, every bridged user is swept; a failed user is retried with
//! backoff, its loaded state dropped so the retry starts from the store.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::users::{Bridged, Page, UserError, Users};
use crate::{Change, stopping};

/// A bridge's side of deliveries.
pub trait Handler: Send + Sync + 'static {
    /// Carries one page of `u`'s deliveries into the other system; returns the rows to commit
    /// with the cursor (ID map rows, portals).
    fn handle(
        &self,
        u: &mut Bridged,
        page: Page,
    ) -> impl Future<Output = Result<Vec<Change>, UserError>> + Send;
}

/// Deliveries fetched per request.
const PAGE: usize = 100;
/// Every bridged user is looked at this often even without announcements.
const SWEEP: Duration = Duration::from_secs(300);

/// Runs until `stop`.
pub async fn run<H: Handler>(
    users: Arc<Users>,
    handler: Arc<H>,
    mut wakes: broadcast::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let runner = Arc::new(Runner {
        users,
        handler,
        busy: std::sync::Mutex::new(HashMap::new()),
    });
    runner.sweep();
    let mut tick = tokio::time::interval(SWEEP);
    tick.tick().await;
    loop {
        tokio::select! {
            w = wakes.recv() => match w {
                Ok(client) => {
                    if !client.contains(&format!("/{}", crate::users::DEVICE_PREFIX)) {
                        continue;
                    }
                    match runner.users.db.native_of_client(&client) {
                        Ok(Some(native)) => runner.kick(native),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "bridge: cannot map a client to its user"),
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::info!(missed = n, "bridge: delivery announcements missed; sweeping every user");
                    runner.sweep();
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => runner.sweep(),
            () = stopping(&mut stop) => return,
        }
    }
}

struct Runner<H> {
    users: Arc<Users>,
    handler: Arc<H>,
    /// Users being processed → another round wanted.
    busy: std::sync::Mutex<HashMap<String, bool>>,
}

impl<H: Handler> Runner<H> {
    fn sweep(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            loop {
                let page = match me.users.db.users(after.as_deref(), 500) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "bridge: cannot list users");
                        return;
                    }
                };
                let done = page.len() < 500;
                after = page.last().map(|(n, _)| n.clone());
                for (native, _) in page {
                    me.kick(native);
                }
                if done {
                    return;
                }
                // Pace the sweep: one page of users at a time.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    fn kick(self: &Arc<Self>, native: String) {
        {
            let mut busy = self
                .busy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(again) = busy.get_mut(&native) {
                *again = true;
                return;
            }
            busy.insert(native.clone(), false);
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                let ok = match me.process(&native).await {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(user = %native, error = %e, "bridge: deliveries failed; retrying");
                        me.users.forget(&native);
                        false
                    }
                };
                if !ok {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
                let mut busy = me
                    .busy
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match busy.get_mut(&native) {
                    Some(again) if *again => *again = false,
                    _ => {
                        busy.remove(&native);
                        return;
                    }
                }
            }
        });
    }

    async fn process(&self, native: &str) -> Result<(), UserError> {
        let Some(u) = self.users.existing(native)? else {
            return Ok(());
        };
        let mut u = u.lock().await;
        u.resubmit().await?;
        catch_up(&*self.handler, &mut u, self.users.policy().key_packages).await
    }
}

/// Processes everything waiting for `u`: each page handled, committed, then acknowledged;
/// KeyPackages topped up to `key_packages` after a Welcome.
///
/// # Errors
/// The first failure (what was committed stays committed).
pub async fn catch_up<H: Handler>(
    handler: &H,
    u: &mut Bridged,
    key_packages: usize,
) -> Result<(), UserError> {
    loop {
        let page = u.fetch(PAGE).await?;
        let more = page.more;
        let had_events = !page.events.is_empty() || !page.membership.is_empty();
        let joined = page
            .events
            .iter()
            .any(|e| matches!(e, mimi_client::Event::Joined { .. }));
        let extra = if had_events {
            handler.handle(u, page).await?
        } else {
            Vec::new()
        };
        u.commit(extra)?;
        if u.row.cursor > 0 {
            u.api.ack(u.row.cursor).await?;
        }
        if joined && let Err(e) = u.top_up(key_packages).await {
            tracing::warn!(user = %u.native, error = %e, "bridge: KeyPackage top-up failed");
        }
        if !more {
            return Ok(());
        }
    }
}
