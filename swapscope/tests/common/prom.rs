//! A real Prometheus scraping `swapscope serve`, for tests/serve.rs and tests/live.rs: the
//! exporter and Prometheus are started by the test on loopback ports and stopped (and their
//! files removed) when dropped, even when the test fails.

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

pub const EXE: &str = env!("CARGO_BIN_EXE_swapscope");
pub const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Whether CI asked for every test to run (then a missing component is a failure).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether Prometheus is installed (`cargo xtask setup`/`test` installs Debian's package);
/// outside CI a missing one skips the test loudly.
pub fn prometheus_or_skip(test: &str) -> bool {
    if Path::new(PROMETHEUS).exists() {
        return true;
    }
    assert!(
        !in_ci(),
        "{PROMETHEUS} missing: `cargo xtask test` installs it"
    );
    eprintln!("\n!!!!!! SKIPPING {test}: no {PROMETHEUS} (run `cargo xtask setup`) !!!!!!\n");
    false
}

/// A response: status code, headers (lower-case names) and body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.0 GET (the test's own client; the server side is hyper's).
pub fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> std::io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A `swapscope serve` child on a free loopback port; SIGTERM when dropped.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub tier: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Serve {
    /// Starts `swapscope serve --listen 127.0.0.1:0 ARGS` and waits for its start line.
    pub fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(EXE)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting swapscope serve: {e}"));
        let err = child.stderr.take().unwrap_or_else(|| panic!("no stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("swapscope serve: http://") {
                    let _ = tx.send(rest.to_string());
                }
                if let Ok(mut k) = keep.lock() {
                    k.push_str(&line);
                    k.push('\n');
                }
            }
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "swapscope serve {args:?} did not start: {}",
                stderr.lock().map(|s| s.clone()).unwrap_or_default()
            );
        };
        // "127.0.0.1:PORT/metrics, tier TIER (...)"
        let (addr, rest) = line.split_once("/metrics, tier ").unwrap_or((&line, ""));
        let addr = addr
            .parse()
            .unwrap_or_else(|e| panic!("address in {line:?}: {e}"));
        let tier = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        Serve {
            child,
            addr,
            tier,
            stderr,
        }
    }

    /// What it wrote to stderr so far.
    pub fn said(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (killed after `secs`).
    pub fn stop(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid, which it still is (not yet waited for).
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop(10);
        }
    }
}

/// A free loopback port (bound and released: good enough for a test).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Prometheus scraping `targets` every second, with its data in a directory of its own.
pub struct Prometheus {
    child: Child,
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl Prometheus {
    pub fn start(dir: &Path, targets: &[SocketAddr]) -> Prometheus {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        // The fleet dashboard's recording rules, evaluated every second like the scrapes.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files: ['{}']\n\
             scrape_configs:\n  - job_name: swapscope\n    static_configs:\n      - targets: [{}]\n",
            rules_dir().join("*.yml").display(),
            list.join(", ")
        );
        let cfg = dir.join("prometheus.yml");
        std::fs::write(&cfg, config).unwrap_or_else(|e| panic!("{e}"));
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let log =
            std::fs::File::create(dir.join("prometheus.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting prometheus: {e}"));
        let p = Prometheus {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        let end = Instant::now() + Duration::from_secs(60);
        while get(p.addr, "/-/ready", None).map_or(true, |r| r.status != 200) {
            assert!(
                Instant::now() < end,
                "prometheus not ready in 60 s: {}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    /// An API GET, its `data` on success.
    pub fn api(&self, path_and_query: &str) -> Value {
        let r = get(self.addr, path_and_query, None)
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}"));
        let v: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}: {}", r.body));
        assert_eq!(v["status"], "success", "{path_and_query}: {}", r.body);
        v["data"].clone()
    }

    /// The series `expr` gives over the last `secs` seconds (a range query, step 1 s).
    pub fn range(&self, expr: &str, secs: u64) -> Vec<Value> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let q = format!(
            "/api/v1/query_range?query={}&start={}&end={now}&step=1",
            encode(expr),
            now.saturating_sub(secs)
        );
        self.api(&q)["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every target's health, once each has been scraped.
    pub fn wait_targets_up(&self, n: usize, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.api("/api/v1/targets");
            let active = t["activeTargets"].as_array().cloned().unwrap_or_default();
            let up = active.iter().filter(|a| a["health"] == "up").count();
            if up == n {
                return;
            }
            assert!(
                Instant::now() < end,
                "targets not up after {secs} s: {active:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// dashboards/rules: the recording rules the fleet dashboard reads.
pub fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/rules")
}

/// The files of `dir` whose extension is `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    files.sort();
    files
}

/// Every PromQL expression of dashboards/*.json: (file, panel title, expression).
pub fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let mut out = Vec::new();
    for f in files_with_ext(&dir, "json") {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap_or_default())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for p in v["panels"].as_array().cloned().unwrap_or_default() {
            for t in p["targets"].as_array().cloned().unwrap_or_default() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((
                        name.clone(),
                        p["title"].as_str().unwrap_or("").to_string(),
                        e.to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// A dashboard expression with Grafana's variables as the test's Prometheus can run it.
pub fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
        .replace("${device}", ".*")
        .replace("$device", ".*")
        .replace("${kernel}", ".*")
        .replace("$kernel", ".*")
        .replace("${size}", "64kB")
        .replace("$size", "64kB")
}
