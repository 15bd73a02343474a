//! The crash campaign: 10,000 messages across three gateways while each of them is killed
//! with SIGKILL at random moments (at least five times each) and restarted. Nothing accepted
//! may be lost, delivered twice or reordered (`mimi load` checks every delivery). Set
//! `MIMI_CAMPAIGN_MESSAGES` to run a shorter or longer campaign.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Fed, Proc};
use mimi_tools::load::{LoadOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_messages_through_sigkills_lose_nothing() {
    let messages: usize = std::env::var("MIMI_CAMPAIGN_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let domains = ["a.example", "b.example", "c.example"];
    let fed = Arc::new(Fed::new("campaign", &domains));
    let procs: Arc<Mutex<Vec<Proc>>> =
        Arc::new(Mutex::new(domains.iter().map(|d| fed.start(d)).collect()));
    let gateways: Vec<(String, Vec<std::net::SocketAddr>)> = procs
        .lock()
        .unwrap()
        .iter()
        .map(|p| (p.domain.clone(), vec![p.client_api]))
        .collect();
    let ready = Arc::new(tokio::sync::Notify::new());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kills = Arc::new(Mutex::new([0usize; 3]));
    let killer = {
        let (procs, fed, ready, done, kills) = (
            Arc::clone(&procs),
            Arc::clone(&fed),
            Arc::clone(&ready),
            Arc::clone(&done),
            Arc::clone(&kills),
        );
        tokio::spawn(async move {
            ready.notified().await;
            let mut i = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                let pause = Duration::from_millis(500 + rand::random::<u64>() % 1000);
                tokio::time::sleep(pause).await;
                if done.load(std::sync::atomic::Ordering::Acquire) {
                    break;
                }
                let n = i % 3;
                i += 1;
                let down = Duration::from_millis(100 + rand::random::<u64>() % 700);
                let (procs, fed) = (Arc::clone(&procs), Arc::clone(&fed));
                tokio::task::spawn_blocking(move || {
                    let domain = procs.lock().unwrap()[n].domain.clone();
                    procs.lock().unwrap()[n].kill();
                    std::thread::sleep(down);
                    let p = Proc::start(&fed.config(&domain), &domain);
                    procs.lock().unwrap()[n] = p;
                })
                .await
                .unwrap();
                kills.lock().unwrap()[n] += 1;
            }
        })
    };
    let report = run(&LoadOptions {
        gateways,
        rooms: 6,
        users: 3,
        messages,
        rate: 250.0,
        patience: Duration::from_secs(90),
        in_flight: 32,
        run: rand::random::<u32>() % 1_000_000,
        ready: Some(ready),
        token: None,
    })
    .await
    .unwrap();
    done.store(true, std::sync::atomic::Ordering::Release);
    killer.await.unwrap();
    let kills = *kills.lock().unwrap();
    eprintln!("campaign: {report:?}, kills per gateway {kills:?}");
    // The figures RELIABILITY.md records, kept where the run leaves them.
    let _ = std::fs::write(
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("campaign-report.json"),
        format!(
            "{}\n",
            serde_json::json!({"report": serde_json::to_value(&report).unwrap_or_default(), "kills_per_gateway": kills})
        ),
    );
    assert!(report.clean(), "{report:?}");
    assert_eq!(
        report.accepted, messages,
        "every message was accepted in the end"
    );
    assert_eq!(
        report.delivered,
        messages * 2,
        "each message reached both other users once"
    );
    if messages >= 10_000 {
        assert!(
            kills.iter().all(|k| *k >= 5),
            "each gateway killed at least 5 times: {kills:?}"
        );
    }
}
