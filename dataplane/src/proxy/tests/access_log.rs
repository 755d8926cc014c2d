//! The access log through a real shard on virtual time: lines rendered
//! into a batch as requests finish and handed over on the shard's tick,
//! whole; a full queue drops a batch and counts its lines.

use std::time::Duration;

use super::harness::*;

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: svc\r\n\r\n").into_bytes()
}

#[test]
fn lines_reach_the_writer_in_one_batch_on_the_tick() {
    let (world, batches) = World::http()
        .cluster("c", &[A])
        .route_to("c")
        .access_log("/var/log/l.log", 4);
    world.run(|gw| async move {
        let _a = Upstream::start(A, |_| Reply::ok("a"));
        let mut client = gw.client().await;
        for path in ["/1", "/2", "/3"] {
            client.send(&get(path)).await;
            assert_eq!(client.response().await.status, 200);
        }
        assert!(batches.try_recv().is_err(), "lines wait for the tick");
        crate::runtime::sleep(Duration::from_millis(150)).await;
        let batch = batches.try_recv().expect("the tick hands the batch over");
        assert_eq!(batch.path, "/var/log/l.log");
        assert_eq!(batch.records, 3);
        let lines: Vec<&str> = batch.lines.lines().collect();
        assert_eq!(lines.len(), 3);
        for (line, path) in lines.iter().zip(["/1", "/2", "/3"]) {
            assert!(
                line.starts_with("{\"start_time\":\"") && line.ends_with('}'),
                "{line}"
            );
            assert!(line.contains(&format!("\"path\":\"{path}\"")), "{line}");
            assert!(line.contains("\"status\":200,"), "{line}");
            assert!(line.contains("\"route\":\"r\",\"cluster\":\"c\""), "{line}");
            assert!(line.contains(&format!("\"endpoint\":\"{A}\"")), "{line}");
        }
        crate::runtime::sleep(Duration::from_millis(150)).await;
        assert!(batches.try_recv().is_err(), "nothing new, nothing sent");
        assert_eq!(gw.stats.access_log_dropped.get(), 0);
    });
}

#[test]
fn a_full_queue_drops_the_batch_and_counts_its_lines() {
    let (world, batches) = World::http()
        .cluster("c", &[A])
        .route_to("c")
        .access_log("stdout", 1);
    world.run(|gw| async move {
        let _a = Upstream::start(A, |_| Reply::ok("a"));
        let mut client = gw.client().await;
        for lines in [2, 3] {
            for _ in 0..lines {
                client.send(&get("/x")).await;
                assert_eq!(client.response().await.status, 200);
            }
            crate::runtime::sleep(Duration::from_millis(150)).await;
        }
        // The queue held the first batch; the second found it full.
        assert_eq!(batches.try_recv().map(|b| b.records), Ok(2));
        assert!(batches.try_recv().is_err());
        assert_eq!(gw.stats.access_log_dropped.get(), 3);
    });
}
