//! Wake-ups from the other nodes: every commit that queues deliveries notifies
//! `mimi_wake` with the clients' IDs (delivered by PostgreSQL on commit); this node wakes
//! the long-polls and streams it serves for them. While the listening connection is down,
//! every waiting client is woken each second instead (they re-read the store), so a
//! delivery is seen within a second even then.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::driver::Wakes;

/// Polling period while no notification can be received.
const FALLBACK: Duration = Duration::from_secs(1);

/// Listens until `stop`.
pub(super) async fn wakes(url: String, wakes: Arc<Wakes>, mut stop: watch::Receiver<bool>) {
    loop {
        let connected = match crate::store::pg::pg_config(&url) {
            Ok(c) => c.connect(NoTls).await,
            Err(e) => Err(e),
        };
        match connected {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                let pump = tokio::spawn(async move {
                    let mut stream = std::pin::pin!(stream);
                    while let Some(m) = stream.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                if tx.send(n.payload().to_owned()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the wake-up listener's connection failed");
                                return;
                            }
                        }
                    }
                });
                if let Err(e) = client.batch_execute("LISTEN mimi_wake").await {
                    tracing::warn!(error = %e, "cannot LISTEN for wake-ups");
                    pump.abort();
                } else {
                    // Deliveries committed while not listening.
                    wakes.wake_all();
                    loop {
                        tokio::select! {
                            m = rx.recv() => match m {
                                Some(client) => wakes.wake(&client),
                                None => break,
                            },
                            () = crate::serving::stopping(&mut stop) => {
                                pump.abort();
                                return;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect the wake-up listener"),
        }
        // Down: poll instead, then try again.
        for _ in 0..3 {
            wakes.wake_all();
            tokio::select! {
                () = tokio::time::sleep(FALLBACK) => {}
                () = crate::serving::stopping(&mut stop) => return,
            }
        }
    }
}
