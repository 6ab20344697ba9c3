//! A real HTTP server on loopback that records every request it gets and answers as the test
//! scripts it (200 with an empty body unless told otherwise): the other end of the agent's
//! pushes. It runs on a thread of the test process, so the children's guard has nothing to
//! account for; dropping it stops it.

use std::{
    collections::VecDeque,
    net::{SocketAddr, TcpListener},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header of that name (names compare case-insensitively, as in HTTP).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<Request>,
    /// The statuses of the next answers, in order; 200 once they are used up.
    script: VecDeque<u16>,
}

pub struct Receiver {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    log: Arc<(Mutex<Log>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

/// A loopback address nobody listens on (bound, then released), for a server that is down
/// and may be started there later with [`Receiver::start_on`].
pub fn unused_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Receiver {
    /// On a free loopback port.
    pub fn start() -> Result<Receiver> {
        Receiver::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    pub fn start_on(addr: SocketAddr) -> Result<Receiver> {
        let server = Arc::new(
            tiny_http::Server::http(addr).map_err(|e| anyhow!("listening on {addr}: {e}"))?,
        );
        let addr = server
            .server_addr()
            .to_ip()
            .context("the receiver listens on an IP address")?;
        let log: Arc<(Mutex<Log>, Condvar)> = Arc::default();
        let thread = std::thread::Builder::new()
            .name(format!("receiver-{addr}"))
            .spawn({
                let (server, log) = (server.clone(), log.clone());
                move || serve(&server, &log)
            })?;
        Ok(Receiver {
            addr,
            server,
            log,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next answers get these statuses, in order (then 200 again).
    pub fn answer(&self, statuses: &[u16]) {
        self.log.0.lock().unwrap().script.extend(statuses);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.0.lock().unwrap().requests.clone()
    }

    /// Every request so far, once there are at least `n` (an error after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Request>> {
        let end = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().unwrap();
        while log.requests.len() < n {
            let now = Instant::now();
            if now >= end {
                bail!(
                    "{} requests reached {} within {timeout:?}, not {n}",
                    log.requests.len(),
                    self.url()
                );
            }
            log = cv.wait_timeout(log, end - now).unwrap().0;
        }
        Ok(log.requests.clone())
    }
}

fn serve(server: &tiny_http::Server, log: &(Mutex<Log>, Condvar)) {
    // `recv` fails once `unblock` is called: the receiver is being dropped.
    while let Ok(mut req) = server.recv() {
        let mut body = Vec::new();
        let read = req.as_reader().read_to_end(&mut body);
        let recorded = Request {
            method: req.method().to_string(),
            path: req.url().to_string(),
            headers: req
                .headers()
                .iter()
                .map(|h| (h.field.to_string(), h.value.to_string()))
                .collect(),
            body,
        };
        let status = {
            let mut log = log.0.lock().unwrap();
            log.requests.push(recorded);
            log.script.pop_front().unwrap_or(200)
        };
        log.1.notify_all();
        let response = if read.is_err() {
            tiny_http::Response::from_data(Vec::new()).with_status_code(400)
        } else if status == 200 {
            // An empty PushResponse serializes to no bytes at all.
            tiny_http::Response::from_data(Vec::new())
                .with_header(header("Content-Type", "application/proto"))
        } else {
            // What a Connect server says with an error status.
            tiny_http::Response::from_data(
                format!(r#"{{"code":"unknown","message":"scripted {status}"}}"#).into_bytes(),
            )
            .with_status_code(status)
            .with_header(header("Content-Type", "application/json"))
        };
        let _ = req.respond(response);
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
