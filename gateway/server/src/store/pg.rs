//! PostgreSQL storage: the engine's [`Store`] over one table of rows `(tbl, k) → v`, with a
//! pool of connections, versioned schema migrations applied at start, and room leases whose
//! fencing tokens are checked inside the transaction that writes (a node that lost a room's
//! lease can never commit for it).
//!
//! The engine is synchronous; tokio-postgres is driven by a small runtime this store owns,
//! and each call waits for its answer (inside a tokio worker, through `block_in_place`).
//! Every transaction is `READ COMMITTED` with row locks where the engine asks for them
//! (`get_for_update` → `SELECT … FOR UPDATE`), so several nodes can write to one database.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use mimi_engine::store::{Row, Store, StoreError, Table, Txn};
use tokio_postgres::{Client, NoTls, Statement};

/// Schema migrations, applied in order; `mimi_schema` records the version reached.
const MIGRATIONS: &[&str] = &[
    // 1: rows and leases.
    "CREATE TABLE IF NOT EXISTS mimi_rows (
         tbl text NOT NULL,
         k bytea NOT NULL,
         v bytea NOT NULL,
         PRIMARY KEY (tbl, k)
     );
     CREATE TABLE IF NOT EXISTS mimi_leases (
         room text PRIMARY KEY,
         node text NOT NULL,
         token bigint NOT NULL,
         expires_at timestamptz NOT NULL
     );",
    // 2: the nodes of a cluster.
    "CREATE TABLE IF NOT EXISTS mimi_nodes (
         node text PRIMARY KEY,
         https text NOT NULL,
         quic text,
         seen_at timestamptz NOT NULL
     );",
];

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// A PostgreSQL error with its cause (the server's message).
fn pg(e: tokio_postgres::Error) -> StoreError {
    if retryable(&e) {
        return StoreError::Backend(RETRY.into());
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    StoreError::Backend(s)
}

/// A transaction PostgreSQL aborted to resolve a conflict: run it again.
const RETRY: &str = "serialization failure or deadlock";

fn retryable(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
    })
}

fn block<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn wait<F: Future>(f: F) -> F::Output {
    futures_executor::block_on(f)
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    get: Statement,
    get_for_update: Statement,
    put: Statement,
    delete: Statement,
    scan_from: Statement,
    scan_range: Statement,
    last_from: Statement,
    last_range: Statement,
    fence: Statement,
}

/// How long a connection attempt, or data sent without acknowledgement, may take before the
/// connection is given up (a partition must fail queries, not hang them).
const NET_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection settings of `url`, with the gateway's timeouts: connecting, unacknowledged
/// data (`tcp_user_timeout`) and TCP keepalives (a silent peer is noticed within ~8 s), so
/// that a node cut off from the database sees its queries fail rather than wait for the
/// kernel's retransmission limit (minutes).
///
/// # Errors
/// An unparsable URL.
pub fn pg_config(url: &str) -> Result<tokio_postgres::Config, tokio_postgres::Error> {
    let mut c: tokio_postgres::Config = url.parse()?;
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(NET_TIMEOUT);
    }
    c.keepalives(true)
        .keepalives_idle(NET_TIMEOUT)
        .keepalives_interval(Duration::from_secs(1))
        .keepalives_retries(3)
        .tcp_user_timeout(NET_TIMEOUT);
    // A node cut off in the middle of a transaction must not keep its row locks: the server
    // ends a session idle in a transaction after this long.
    let idle = format!(
        "-c idle_in_transaction_session_timeout={}",
        NET_TIMEOUT.as_millis()
    );
    let options = match c.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {idle}"),
        _ => idle,
    };
    c.options(&options);
    Ok(c)
}

impl Conn {
    async fn open(url: &str, rt: &tokio::runtime::Handle) -> Result<Self, StoreError> {
        let (client, connection) = pg_config(url)
            .map_err(pg)?
            .connect(NoTls)
            .await
            .map_err(pg)?;
        rt.spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a PostgreSQL connection ended");
            }
        });
        let p = async |q: &str| client.prepare(q).await.map_err(pg);
        Ok(Self {
            get: p("SELECT v FROM mimi_rows WHERE tbl = $1 AND k = $2").await?,
            get_for_update: p("SELECT v FROM mimi_rows WHERE tbl = $1 AND k = $2 FOR UPDATE").await?,
            put: p("INSERT INTO mimi_rows (tbl, k, v) VALUES ($1, $2, $3) ON CONFLICT (tbl, k) DO UPDATE SET v = EXCLUDED.v").await?,
            delete: p("DELETE FROM mimi_rows WHERE tbl = $1 AND k = $2").await?,
            scan_from: p("SELECT k, v FROM mimi_rows WHERE tbl = $1 AND k >= $2 AND k > $3 ORDER BY k LIMIT $4").await?,
            scan_range: p("SELECT k, v FROM mimi_rows WHERE tbl = $1 AND k >= $2 AND k > $3 AND k < $4 ORDER BY k LIMIT $5").await?,
            last_from: p("SELECT k, v FROM mimi_rows WHERE tbl = $1 AND k >= $2 ORDER BY k DESC LIMIT 1").await?,
            last_range: p("SELECT k, v FROM mimi_rows WHERE tbl = $1 AND k >= $2 AND k < $3 ORDER BY k DESC LIMIT 1").await?,
            // KEY SHARE: a renewal (an update of `expires_at`) does not wait for commits in
            // flight, but a takeover, which locks the row FOR UPDATE first, does.
            fence: p("SELECT token FROM mimi_leases WHERE room = $1 AND expires_at > now() FOR KEY SHARE").await?,
            client,
        })
    }
}

/// The advisory lock key migrations hold ("mimi" in ASCII).
const MIGRATION_LOCK: i64 = 0x6d69_6d69;

/// Applies the schema migrations this build knows, under a lock (several nodes may start
/// together), and refuses a database from a newer version.
async fn migrate(url: &str, rt: &tokio::runtime::Handle) -> Result<(), StoreError> {
    let (mut client, connection) = pg_config(url)
        .map_err(pg)?
        .connect(NoTls)
        .await
        .map_err(pg)?;
    rt.spawn(async move {
        let _ = connection.await;
    });
    // One node migrates at a time: `CREATE TABLE IF NOT EXISTS` itself races between
    // sessions, so the whole migration runs under an advisory lock (released when this
    // connection closes at the end of the function).
    client
        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await
        .map_err(pg)?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS mimi_schema (version integer NOT NULL)")
        .await
        .map_err(pg)?;
    let tx = client.transaction().await.map_err(pg)?;
    tx.batch_execute("LOCK TABLE mimi_schema IN EXCLUSIVE MODE")
        .await
        .map_err(pg)?;
    let v: i32 = tx
        .query_opt("SELECT version FROM mimi_schema", &[])
        .await
        .map_err(pg)?
        .map_or(0, |r| r.get(0));
    if v as usize > MIGRATIONS.len() {
        return Err(backend(format!(
            "the database has schema version {v}; this mimi understands up to {} (upgrade mimi)",
            MIGRATIONS.len()
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(v as usize) {
        tx.batch_execute(m).await.map_err(pg)?;
        let n = i as i32 + 1;
        tx.execute("DELETE FROM mimi_schema", &[])
            .await
            .map_err(pg)?;
        tx.execute("INSERT INTO mimi_schema (version) VALUES ($1)", &[&n])
            .await
            .map_err(pg)?;
        tracing::info!(version = n, "PostgreSQL schema migrated");
    }
    tx.commit().await.map_err(pg)
}

/// The exclusive upper bound of keys starting with `prefix` (None: no bound).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The stable table name (the `tbl` column).
fn tbl(t: Table) -> &'static str {
    t.name()
}

async fn get(
    c: &Conn,
    stmt: &Statement,
    table: Table,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let rows = c
        .client
        .query(stmt, &[&tbl(table), &key])
        .await
        .map_err(pg)?;
    Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
}

async fn scan(
    c: &Conn,
    table: Table,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Row>, StoreError> {
    let after = after.unwrap_or(&[]);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = match prefix_end(prefix) {
        Some(end) => {
            c.client
                .query(&c.scan_range, &[&tbl(table), &prefix, &after, &end, &limit])
                .await
        }
        None => {
            c.client
                .query(&c.scan_from, &[&tbl(table), &prefix, &after, &limit])
                .await
        }
    }
    .map_err(pg)?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn last(c: &Conn, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
    let rows = match prefix_end(prefix) {
        Some(end) => {
            c.client
                .query(&c.last_range, &[&tbl(table), &prefix, &end])
                .await
        }
        None => c.client.query(&c.last_from, &[&tbl(table), &prefix]).await,
    }
    .map_err(pg)?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1))))
}

/// A PostgreSQL database as the gateway's store.
pub struct PgStore {
    rt: Option<tokio::runtime::Runtime>,
    pool: Mutex<Vec<Conn>>,
    available: Condvar,
    url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// A connection checked out of the pool (returned on drop).
struct Lease<'a> {
    store: &'a PgStore,
    conn: Option<Conn>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take()
            && !c.client.is_closed()
        {
            self.store
                .pool
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(c);
            self.store.available.notify_one();
        }
    }
}

impl PgStore {
    /// Connects `connections` times to `url` and applies the schema migrations.
    ///
    /// # Errors
    /// The database cannot be reached or migrated.
    pub fn open(url: &str, connections: usize) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mimi-pg")
            .enable_all()
            .build()
            .map_err(backend)?;
        let handle = rt.handle().clone();
        block(|| {
            wait(async {
                let h = handle.clone();
                let u = url.to_owned();
                handle
                    .spawn(async move { migrate(&u, &h).await })
                    .await
                    .map_err(backend)?
            })
        })?;
        let conns = block(|| {
            wait(async {
                let mut v = Vec::new();
                for _ in 0..connections.max(1) {
                    let h = handle.clone();
                    let u = url.to_owned();
                    v.push(
                        handle
                            .spawn(async move { Conn::open(&u, &h).await })
                            .await
                            .map_err(backend)??,
                    );
                }
                Ok::<_, StoreError>(v)
            })
        })?;
        Ok(Self {
            rt: Some(rt),
            pool: Mutex::new(conns),
            available: Condvar::new(),
            url: url.to_owned(),
        })
    }

    fn handle(&self) -> Result<tokio::runtime::Handle, StoreError> {
        self.rt
            .as_ref()
            .map(|r| r.handle().clone())
            .ok_or_else(|| backend("the store is closed"))
    }

    fn checkout(&self) -> Result<Lease<'_>, StoreError> {
        let mut pool = self
            .pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(c) = pool.pop() {
                return Ok(Lease {
                    store: self,
                    conn: Some(c),
                });
            }
            let (p, timeout) = self
                .available
                .wait_timeout(pool, Duration::from_secs(5))
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pool = p;
            if timeout.timed_out() && pool.is_empty() {
                // Replace connections that died (the database restarted).
                drop(pool);
                let h = self.handle()?;
                let u = self.url.clone();
                let c = wait(h.spawn({
                    let h = h.clone();
                    async move { Conn::open(&u, &h).await }
                }))
                .map_err(backend)??;
                return Ok(Lease {
                    store: self,
                    conn: Some(c),
                });
            }
        }
    }

    /// Takes or renews the lease of `room` for `node` until `ttl` from now; returns the
    /// fencing token, or `None` when another node holds an unexpired lease. A node that takes
    /// over a room gets a greater token than any before.
    ///
    /// # Errors
    /// Database failures.
    pub fn lease(&self, room: &str, node: &str, ttl: Duration) -> Result<Option<u64>, StoreError> {
        let c = self.checkout()?;
        let secs = ttl.as_secs_f64();
        block(|| {
            wait(async {
                let row = c
                    .client
                    .query_opt(
                        "INSERT INTO mimi_leases (room, node, token, expires_at)
                         VALUES ($1, $2, 1, now() + make_interval(secs => $3))
                         ON CONFLICT (room) DO UPDATE SET
                             node = EXCLUDED.node,
                             token = CASE WHEN mimi_leases.node = EXCLUDED.node
                                          THEN mimi_leases.token ELSE mimi_leases.token + 1 END,
                             expires_at = EXCLUDED.expires_at
                         WHERE mimi_leases.node = EXCLUDED.node OR mimi_leases.expires_at <= now()
                         RETURNING token",
                        &[&room, &node, &secs],
                    )
                    .await
                    .map_err(pg)?;
                Ok(row.map(|r| r.get::<_, i64>(0) as u64))
            })
        })
    }

    /// Who holds `room`'s lease, and until when it is valid (seconds from now).
    ///
    /// # Errors
    /// Database failures.
    pub fn lease_holder(&self, room: &str) -> Result<Option<(String, u64, f64)>, StoreError> {
        let c = self.checkout()?;
        block(|| {
            wait(async {
                Ok(c
                    .client
                    .query_opt(
                        "SELECT node, token, extract(epoch FROM expires_at - now())::float8 FROM mimi_leases WHERE room = $1",
                        &[&room],
                    )
                    .await.map_err(pg)?
                    .map(|r| (r.get(0), r.get::<_, i64>(1) as u64, r.get(2))))
            })
        })
    }
}

struct PgTxn<'a> {
    c: &'a Conn,
}

impl Txn for PgTxn<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        wait(get(self.c, &self.c.get, table, key))
    }

    fn get_for_update(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        wait(get(self.c, &self.c.get_for_update, table, key))
    }

    fn lock_rows(&mut self, table: Table, keys: &[Vec<u8>]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        // ORDER BY: rows are locked as they are returned, in key order.
        wait(self.c.client.query(
            "SELECT 1 FROM mimi_rows WHERE tbl = $1 AND k = ANY($2) ORDER BY k FOR UPDATE",
            &[&tbl(table), &keys],
        ))
        .map(|_| ())
        .map_err(pg)
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        wait(
            self.c
                .client
                .execute(&self.c.put, &[&tbl(table), &key, &value]),
        )
        .map(|_| ())
        .map_err(pg)
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        wait(self.c.client.execute(&self.c.delete, &[&tbl(table), &key]))
            .map(|_| ())
            .map_err(pg)
    }

    fn scan(
        &mut self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        wait(scan(self.c, table, prefix, after, limit))
    }

    fn last(&mut self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
        wait(last(self.c, table, prefix))
    }

    fn notify(&mut self, clients: &[String]) -> Result<(), StoreError> {
        let clients: Vec<&str> = clients.iter().map(String::as_str).collect();
        wait(self.c.client.execute(
            "SELECT pg_notify('mimi_wake', c) FROM unnest($1::text[]) AS c",
            &[&clients],
        ))
        .map(|_| ())
        .map_err(pg)
    }

    fn check_fence(&mut self, room: &str, token: u64) -> Result<(), StoreError> {
        let held = wait(self.c.client.query_opt(&self.c.fence, &[&room]))
            .map_err(pg)?
            .map(|r| r.get::<_, i64>(0) as u64);
        if held == Some(token) {
            Ok(())
        } else {
            Err(StoreError::Fenced {
                room: room.to_owned(),
                token,
            })
        }
    }
}

impl Store for PgStore {
    fn get_or_put(&self, table: Table, key: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let c = self.checkout()?;
        block(|| {
            wait(async {
                c.client
                    .execute(
                        "INSERT INTO mimi_rows (tbl, k, v) VALUES ($1, $2, $3) ON CONFLICT (tbl, k) DO NOTHING",
                        &[&tbl(table), &key, &value],
                    )
                    .await
                    .map_err(pg)?;
                get(&c, &c.get, table, key)
                    .await?
                    .ok_or_else(|| backend("a row just written is missing"))
            })
        })
    }

    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.checkout()?;
        block(|| wait(get(&c, &c.get, table, key)))
    }

    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let c = self.checkout()?;
        block(|| wait(scan(&c, table, prefix, after, limit)))
    }

    fn last(&self, table: Table, prefix: &[u8]) -> Result<Option<Row>, StoreError> {
        let c = self.checkout()?;
        block(|| wait(last(&c, table, prefix)))
    }

    fn transact(
        &self,
        f: &mut dyn FnMut(&mut dyn Txn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let c = self.checkout()?;
        block(|| {
            // Concurrent writers (nodes of a cluster) may deadlock on row locks; PostgreSQL
            // aborts one transaction, which is then run again from the start.
            let mut tries = 0;
            loop {
                tries += 1;
                wait(c.client.batch_execute("BEGIN")).map_err(pg)?;
                let r = f(&mut PgTxn { c: &c })
                    .and_then(|()| wait(c.client.batch_execute("COMMIT")).map_err(pg));
                match r {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        let _ = wait(c.client.batch_execute("ROLLBACK"));
                        if tries < 5 && matches!(&e, StoreError::Backend(m) if m == RETRY) {
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
        })
    }
}
