//! nginx as a peer on a free port of 127.0.0.1: an HTTP/2 (h2c or TLS) or HTTP/1.1
//! upstream for tests, stopped (by PID) when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nginx {
    /// nginx with one `server { ... }` whose text is `server` (`{port}` is replaced
    /// by the port it listens on). `None` when nginx is not installed.
    pub fn start(server: &str) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())?;
        let port = super::free_port();
        let dir = std::env::temp_dir().join(format!("portico-nginx-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let server = server.replace("{port}", &port.to_string());
        let conf = format!(
            "daemon off; master_process off; worker_processes 1; error_log {d}/error.log; pid {d}/nginx.pid;\n\
             events {{}}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
               server {{ {server} }} }}\n",
            d = dir.display(),
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx conf");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        assert!(
            super::procs::wait_for_port(port, Duration::from_secs(10)),
            "nginx did not listen"
        );
        Some(Nginx { child, port, dir })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
