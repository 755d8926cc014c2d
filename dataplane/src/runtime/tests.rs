//! Runtime tests: executor wake/cancel, timers, buffer pool, operation
//! cancellation while in flight, multishot receive backpressure, and two
//! shards both receiving connections.

use std::cell::Cell;
use std::io::{Read, Write};
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

#[test]
fn accept_recv_send_roundtrip() {
    run(async {
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).unwrap();
            buf
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
        assert_eq!(&client.join().unwrap(), b"pong");
        // Peer closed: an empty chunk.
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
        let client = std::thread::spawn(move || {
            let s = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(s);
        });
        let mut conn = listener.accept().await.unwrap();
        let before = driver::with(|d| d.in_flight());
        // The receive is armed and in flight; the timeout drops the future.
        let r = timeout(Duration::from_millis(5), conn.recv()).await;
        assert!(r.is_err());
        // Cancelling the operation (dropping the stream) must complete it.
        drop(conn);
        for _ in 0..100 {
            if driver::with(|d| d.in_flight()) < before + 1 {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        let after = driver::with(|d| d.in_flight());
        assert!(after <= before, "in flight before {before}, after {after}");
        client.join().unwrap();
    });
}

#[test]
fn dropping_an_in_flight_single_shot_op_keeps_its_buffer_until_completion() {
    // Fallback mode: single-shot recv owns a pooled Vec the kernel writes.
    let config = RuntimeConfig {
        multishot_recv: false,
        ..RuntimeConfig::default()
    };
    block_on(&config, async {
        assert!(!driver::features().multishot_recv);
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            s.write_all(&[7u8; 1000]).unwrap();
            std::thread::sleep(Duration::from_millis(30));
        });
        let mut conn = listener.accept().await.unwrap();
        // Only the listener's multishot accept is in flight now.
        let before = driver::with(|d| d.in_flight());
        let r = timeout(Duration::from_millis(5), conn.recv()).await;
        assert!(r.is_err(), "nothing sent yet");
        // The dropped op's buffer is parked in its slot; the cancel completes it.
        for _ in 0..100 {
            if driver::with(|d| d.in_flight()) == before {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(driver::with(|d| d.in_flight()), before);
        // The stream still works after a cancelled receive.
        let mut got = 0;
        while got < 1000 {
            let c = conn.recv().await.unwrap();
            assert!(c.iter().all(|&b| b == 7));
            got += c.len();
        }
        client.join().unwrap();
    })
    .unwrap();
}

#[test]
fn explicit_cancel_of_in_flight_op_resolves_with_ecanceled() {
    run(async {
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let conn = listener.accept().await.unwrap();
        let buf = vec![0u8; 64];
        let mut buf = buf;
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
fn slow_reader_pauses_multishot_recv_and_loses_nothing() {
    run(async {
        assert!(
            driver::features().multishot_recv,
            "kernel provides buffer rings"
        );
        let mut listener = TcpListener::bind(loopback(), false).unwrap();
        let addr = listener.local_addr();
        const TOTAL: usize = 8 * 1024 * 1024;
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
            let mut sent = 0;
            while sent < TOTAL {
                s.write_all(&block).unwrap();
                sent += block.len();
            }
        });
        let mut conn = listener.accept().await.unwrap();
        let mut got = 0usize;
        let mut n = 0u64;
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
            }
        }
        assert_eq!(got, TOTAL);
        client.join().unwrap();
    });
}

#[test]
fn two_shards_both_receive_connections() {
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
