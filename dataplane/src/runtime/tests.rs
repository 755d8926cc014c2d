//! Runtime tests: executor wake/cancel, timers, buffer pool, operation
//! cancellation while in flight, multishot receive backpressure, and two
//! shards both receiving connections.

use std::cell::Cell;
use std::io::Read;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::*;

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    block_on(&RuntimeConfig::default(), f).expect("runtime starts")
}

#[test]
fn spawned_tasks_run_and_join() {
    let out = run(async {
        let a = spawn(async { 1 });
        let b = spawn(async {
            yield_now().await;
            2
        });
        a.await + b.await
    });
    assert_eq!(out, 3);
}

#[test]
fn wake_from_another_task_resumes_waiter() {
    run(async {
        let flag = Rc::new(Cell::new(false));
        let f2 = flag.clone();
        let waiter = spawn(async move {
            while !f2.get() {
                sleep(Duration::from_millis(1)).await;
            }
            7
        });
        sleep(Duration::from_millis(5)).await;
        flag.set(true);
        assert_eq!(waiter.await, 7);
    });
}

#[test]
fn timers_fire_in_order_and_not_early() {
    run(async {
        let start = Instant::now();
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut handles = Vec::new();
        for ms in [30u64, 10, 20] {
            let order = order.clone();
            handles.push(spawn(async move {
                sleep(Duration::from_millis(ms)).await;
                order.borrow_mut().push(ms);
            }));
        }
        for h in handles {
            h.await;
        }
        assert_eq!(*order.borrow(), vec![10, 20, 30]);
        assert!(start.elapsed() >= Duration::from_millis(30));
    });
}

#[test]
fn timeout_elapses_and_dropped_sleep_disarms() {
    run(async {
        let r = timeout(Duration::from_millis(5), sleep(Duration::from_secs(60))).await;
        assert_eq!(r, Err(Elapsed));
        assert_eq!(
            timer::armed(),
            0,
            "the dropped inner sleep removed its deadline"
        );
        let r = timeout(Duration::from_secs(60), async { 5 }).await;
        assert_eq!(r, Ok(5));
        assert_eq!(timer::armed(), 0);
    });
}

#[test]
fn buffer_pool_exhaustion_and_return() {
    run(async {
        let start = BufPool::pooled();
        let bufs: Vec<Vec<u8>> = (0..10).map(|_| BufPool::take()).collect();
        assert!(bufs.iter().all(|b| b.capacity() >= pool::POOLED_CAPACITY));
        for b in bufs {
            BufPool::give(b);
        }
        assert_eq!(BufPool::pooled(), start + 10);
        let mut idle = BufPool::take();
        BufPool::release_if_empty(&mut idle);
        assert_eq!(idle.capacity(), 0, "an empty buffer goes back to the pool");
    });
}

// The peers below run as tasks on the same runtime (not on std threads):
// valgrind 3.19 holds its big lock across io_uring_enter, so a second
// thread would never run while the ring thread waits. Only the test named
// `threads_*` needs real threads and is skipped under valgrind.

/// Writes `data` to a new connection to `addr` and keeps it open `linger`.
async fn client_send(addr: SocketAddr, data: Vec<u8>, linger: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if !data.is_empty() {
        let (r, _) = s.send_owned(data).await;
        r.unwrap();
    }
    let mut reply = Vec::new();
    if linger.is_zero() {
        return reply;
    }
    let _ = timeout(linger, async {
        loop {
            let c = s.recv().await.unwrap();
            if c.is_empty() {
                break;
            }
            reply.extend_from_slice(&c);
        }
    })
    .await;
    reply
}

#[test]
fn accept_recv_send_roundtrip() {
    run(async {
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        let client = spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let (r, _) = s.send_owned(b"ping".to_vec()).await;
            r.unwrap();
            let mut got = Vec::new();
            while got.len() < 4 {
                got.extend_from_slice(&s.recv().await.unwrap());
            }
            got
        });
        let mut conn = listener.accept().await.unwrap();
        let mut got = Vec::new();
        while got.len() < 4 {
            let chunk = conn.recv().await.unwrap();
            assert!(!chunk.is_empty());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, b"ping");
        let (r, _) = conn.send_owned(b"pong".to_vec()).await;
        r.unwrap();
        assert_eq!(client.await, b"pong");
        // The client task ended and dropped its stream: an empty chunk.
        let chunk = conn.recv().await.unwrap();
        assert!(chunk.is_empty());
    });
}

#[test]
fn connect_refused_is_an_error() {
    run(async {
        // Bind then drop to find a port nobody listens on.
        let addr = std::net::TcpListener::bind(loopback())
            .unwrap()
            .local_addr()
            .unwrap();
        let err = TcpStream::connect(addr).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    });
}

#[test]
fn dropping_an_in_flight_recv_parks_then_frees_its_slot() {
    run(async {
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        let client = spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            sleep(Duration::from_millis(50)).await;
            drop(s);
        });
        let mut conn = listener.accept().await.unwrap();
        sleep(Duration::from_millis(2)).await;
        let before = driver::with(|d| d.in_flight());
        // The receive is armed and in flight; the timeout drops the future.
        let r = timeout(Duration::from_millis(5), conn.recv()).await;
        assert!(r.is_err());
        assert_eq!(
            driver::with(|d| d.in_flight()),
            before + 1,
            "multishot recv still armed"
        );
        // Dropping the stream cancels the operation; its completion frees the slot.
        drop(conn);
        for _ in 0..100 {
            if driver::with(|d| d.in_flight()) <= before {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        let after = driver::with(|d| d.in_flight());
        assert!(after <= before, "in flight before {before}, after {after}");
        client.await;
    });
}

#[test]
fn a_dropped_single_shot_receive_stays_armed_and_dropping_the_stream_cancels_it() {
    // Fallback mode: single-shot recv owns a pooled Vec the kernel writes.
    let config = RuntimeConfig {
        multishot_recv: false,
        ..RuntimeConfig::default()
    };
    block_on(&config, async {
        assert!(!driver::features().multishot_recv);
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        let mut conn_fut = spawn(async move { listener.accept().await.unwrap() });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let mut conn = (&mut conn_fut).await;
        // Only the (dropped) listener's cancelled accept may still be in flight.
        sleep(Duration::from_millis(2)).await;
        let before = driver::with(|d| d.in_flight());
        let r = timeout(Duration::from_millis(5), conn.recv()).await;
        assert!(r.is_err(), "nothing sent yet");
        // The receive stays armed in the stream (cancel-safe `recv`)...
        assert_eq!(driver::with(|d| d.in_flight()), before + 1);
        // ...and the bytes it gets are the next call's.
        let (r, _) = client.send_owned(vec![7u8; 1000]).await;
        r.unwrap();
        let mut got = 0;
        while got < 1000 {
            let c = conn.recv().await.unwrap();
            assert!(c.iter().all(|&b| b == 7));
            got += c.len();
        }
        // A receive in flight when the stream is dropped: its buffer is
        // parked in the op's slot until the cancel completes it.
        let r = timeout(Duration::from_millis(5), conn.recv()).await;
        assert!(r.is_err());
        drop(conn);
        for _ in 0..100 {
            if driver::with(|d| d.in_flight()) <= before {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        assert!(driver::with(|d| d.in_flight()) <= before);
    })
    .unwrap();
}

#[test]
fn explicit_cancel_of_in_flight_op_resolves_with_ecanceled() {
    run(async {
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        let _client = spawn(client_send(addr, Vec::new(), Duration::from_millis(100)));
        let conn = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64];
        let sqe =
            io_uring::opcode::Recv::new(io_uring::types::Fd(conn.fd), buf.as_mut_ptr(), 64).build();
        // SAFETY: the kernel writes into `buf`'s heap memory, owned by the op.
        let op = unsafe { op::Op::submit(sqe, buf) };
        op.cancel();
        let (completion, _buf) = op.await;
        assert_eq!(completion.result, -libc::ECANCELED);
    });
}

#[test]
fn slow_reader_bounds_unread_receive_bytes_and_loses_nothing() {
    run(async {
        assert!(
            driver::features().multishot_recv,
            "kernel provides buffer rings"
        );
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        const TOTAL: usize = 4 * 1024 * 1024;
        let writer = spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
            let mut sent = 0;
            let mut block = block;
            while sent < TOTAL {
                let (r, back) = s.send_owned(block).await;
                r.unwrap();
                block = back;
                sent += block.len();
            }
        });
        let mut conn = listener.accept().await.unwrap();
        let mut got = 0usize;
        let mut n = 0u64;
        let mut max_queued = 0;
        loop {
            let chunk = conn.recv().await.unwrap();
            if chunk.is_empty() {
                break;
            }
            for (i, b) in chunk.iter().enumerate() {
                assert_eq!(*b, (((got + i) % 65536) % 251) as u8, "byte {}", got + i);
            }
            got += chunk.len();
            n += 1;
            if n.is_multiple_of(16) {
                // Fall behind: completions queue up and the receive pauses.
                sleep(Duration::from_millis(1)).await;
                let queued = driver::with(|d| {
                    d.slots
                        .iter()
                        .map(|s| match s {
                            driver::Slot::Multi(m) if m.kind == driver::MultiKind::Recv => {
                                m.queue.iter().map(|c| c.result.max(0) as usize).sum()
                            }
                            _ => 0,
                        })
                        .max()
                        .unwrap_or(0)
                });
                max_queued = max_queued.max(queued);
            }
        }
        writer.await;
        assert_eq!(got, TOTAL);
        assert!(
            max_queued <= tcp::MAX_RECV_PER_ARM as usize,
            "unread bytes bounded, saw {max_queued}"
        );
    });
}

#[test]
fn threads_two_shards_both_receive_connections() {
    let addr = {
        // Reserve a port, then both shards bind it with SO_REUSEPORT.
        let l = std::net::TcpListener::bind(loopback()).unwrap();
        l.local_addr().unwrap()
    };
    let served: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let ready = Arc::new(std::sync::Barrier::new(3));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = {
        let served = served.clone();
        let ready = ready.clone();
        let stop = stop.clone();
        move |id: usize, (): ()| {
            let served = served.clone();
            let ready = ready.clone();
            let stop = stop.clone();
            run(async move {
                let mut listener = TcpListener::bind(addr, true).unwrap();
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(Ok(mut conn)) =
                        timeout(Duration::from_millis(20), listener.accept()).await
                    {
                        served[id].fetch_add(1, Ordering::Relaxed);
                        let (r, _) = conn.send_owned(b"x".to_vec()).await;
                        r.unwrap();
                    }
                }
            });
        }
    };
    let threads = shard::spawn_shards(vec![(), ()], false, body).unwrap();
    ready.wait();
    for _ in 0..200 {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.handle.join().unwrap();
    }
    let (a, b) = (
        served[0].load(Ordering::Relaxed),
        served[1].load(Ordering::Relaxed),
    );
    assert_eq!(a + b, 200);
    assert!(a > 0 && b > 0, "both shards served connections: {a} / {b}");
}

#[test]
fn abort_drops_a_pending_task_and_disarms_its_timer() {
    run(async {
        let before = executor::live_tasks();
        let sleeper = spawn(async {
            sleep(Duration::from_secs(60)).await;
        });
        yield_now().await; // let it arm its timer
        assert_eq!(executor::live_tasks(), before + 1);
        assert_eq!(timer::armed(), 1);
        sleeper.abort();
        assert_eq!(executor::live_tasks(), before);
        assert_eq!(timer::armed(), 0, "the aborted task's sleep was dropped");
        assert!(!sleeper.is_finished());
        // Aborting twice, or after the slot was reused, is harmless.
        let other = spawn(async { 5 });
        sleeper.abort();
        assert_eq!(other.await, 5);
    });
}
