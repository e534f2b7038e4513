//! Test support shared by this crate's and other crates' tests: a throw-away `etcd` server.
//! Compiled only with the `testing` feature.

#![allow(clippy::unwrap_used)] // test support: a broken fixture should panic loudly

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// An `etcd` server on free loopback ports with its data in a temporary directory; killed on drop.
pub struct EtcdServer {
    child: Child,
    /// `http://127.0.0.1:PORT`, for `EtcdStore::connect`.
    pub endpoint: String,
    _data: TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits until it accepts connections.
    ///
    /// Panics when etcd cannot be found (install the `etcd-server` package, or point
    /// `EMCO_ETCD_BIN` at the binary) unless `EMCO_SKIP_ETCD=1`, in which case it returns `None`.
    pub fn start() -> Option<Self> {
        let Some(binary) = etcd_binary() else {
            if std::env::var("EMCO_SKIP_ETCD").is_ok_and(|v| v == "1") {
                eprintln!("etcd not found; skipping this etcd test because EMCO_SKIP_ETCD=1");
                return None;
            }
            panic!(
                "etcd is not on PATH (nor named by EMCO_ETCD_BIN): the etcd backend tests need \
                 it (Debian: apt-get install etcd-server). Set EMCO_SKIP_ETCD=1 to skip them."
            );
        };
        let data = tempfile::tempdir().unwrap();
        let [client_port, peer_port] = free_ports();
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log_path = data.path().join("etcd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&binary)
            .args(["--name", "emco-test"])
            .arg("--data-dir")
            .arg(data.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("emco-test={peer_url}")])
            .args(["--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let mut server = Self {
            child,
            endpoint: client_url,
            _data: data,
        };
        server.wait_until_listening(client_port, &log_path);
        Some(server)
    }

    fn wait_until_listening(&mut self, port: u16, log_path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(log_path).unwrap_or_default();
                panic!("etcd exited early ({status}); its log:\n{log}");
            }
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not listen on {address} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_binary() -> Option<PathBuf> {
    if let Some(binary) = std::env::var_os("EMCO_ETCD_BIN") {
        return Some(PathBuf::from(binary));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
}

/// Two distinct ports that were free a moment ago (both are held while choosing).
fn free_ports() -> [u16; 2] {
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let second = TcpListener::bind("127.0.0.1:0").unwrap();
    [
        first.local_addr().unwrap().port(),
        second.local_addr().unwrap().port(),
    ]
}
