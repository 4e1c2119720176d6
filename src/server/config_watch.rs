//! The file triggers of a reload: the configuration file itself (watched with
//! inotify through the `notify` crate), and the certificate files it names
//! (looked at every second).
//!
//! The configuration file is watched through its *directory*, not as a file:
//! editors save by writing a new file and renaming it over the old one (the old
//! inode, which a file watch would follow, is gone), and a Kubernetes ConfigMap
//! volume swaps a `..data` symbolic link to a new directory in one rename (the
//! file's own path never changes). Both show as events in the directory the
//! configured path is in; the directory the path resolves to is watched too (a
//! path that is a symbolic link into another directory, edited in place there),
//! and looked up again after every change, since a swap moves it.
//!
//! Only events that name the configured file count (a log file written in the
//! same directory would otherwise wake the reload path on every write), unless
//! the configured path is a symbolic link: then the swap shows under other names
//! (`..data`) and every change in the watched directories counts.
//!
//! Events are debounced (`[reload] watch_debounce_ms`: a burst of writes and
//! renames makes one reload, after it is quiet), then the control thread is
//! woken; it reads the file and reloads only if its text changed (an editor that
//! rewrites the same bytes, a `touch`, does nothing).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use notify::{RecursiveMode, Watcher};

use crate::config::Snapshot;

/// How often the watch thread looks at its stop flag when nothing happens.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// A running watch of the configuration file.
pub struct ConfigWatch {
    changed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl ConfigWatch {
    /// Watches `path`'s directories; after a burst of events quiet for `debounce`,
    /// marks a change and wakes the control thread through `wake`.
    pub fn start(path: &Path, debounce: Duration, wake: Sender<()>) -> Result<ConfigWatch, String> {
        let (events_tx, events) = unbounded();
        let configured = path.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Reading a file is an event too (opened, closed): only changes count,
                // or each reload's own read would trigger the next one.
                if event.is_ok_and(|e| {
                    !e.kind.is_access() && !e.kind.is_other() && names_config(&e.paths, &configured)
                }) {
                    let _ = events_tx.send(());
                }
            })
            .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
        let mut watched = Vec::new();
        let dirs = directories(path);
        for dir in dirs.iter().cloned() {
            watcher
                .watch(&dir, RecursiveMode::NonRecursive)
                .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
            watched.push(dir);
        }
        // Set at once: a change between the read at start-up and the start of the
        // watch would go unseen otherwise (the control thread compares the text).
        let changed = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, stopped, file) = (changed.clone(), stop.clone(), path.to_path_buf());
        std::thread::Builder::new()
            .name("portico-config-watch".into())
            .spawn(move || {
                let mut w = Watch {
                    watcher,
                    watched,
                    path: file,
                };
                while !stopped.load(Ordering::Relaxed) {
                    if !next_burst(&events, debounce) {
                        continue;
                    }
                    w.follow_links();
                    seen.store(true, Ordering::Release);
                    let _ = wake.try_send(());
                }
            })
            .map_err(|e| format!("cannot start the config watch thread: {e}"))?;
        // Absolute in the log: a relative config path's folder would print as ".".
        let dirs: Vec<String> = dirs
            .iter()
            .map(|d| {
                std::fs::canonicalize(d)
                    .map_or_else(|_| d.display().to_string(), |a| a.display().to_string())
            })
            .collect();
        tracing::info!(
            "watching the config file through {} (renames and symlink swaps count)",
            dirs.join(" and ")
        );
        Ok(ConfigWatch { changed, stop })
    }

    /// True once after the file's directory saw a burst of changes.
    pub fn take_change(&self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }
}

impl Drop for ConfigWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The watch thread's state: the watcher and the directories it watches.
struct Watch {
    watcher: notify::RecommendedWatcher,
    watched: Vec<PathBuf>,
    path: PathBuf,
}

impl Watch {
    /// After a change the path may resolve into another directory (a ConfigMap
    /// swap): watch that one instead of the old.
    fn follow_links(&mut self) {
        let now = directories(&self.path);
        for old in self.watched.iter().filter(|d| !now.contains(d)) {
            let _ = self.watcher.unwatch(old);
        }
        for new in now.iter().filter(|d| !self.watched.contains(d)) {
            if let Err(e) = self.watcher.watch(new, RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {}: {e}", new.display());
            }
        }
        self.watched = now;
    }
}

/// Whether an event on `paths` may have changed the configuration at `configured`:
/// one of them has the file's name, or the event names no path (the kernel's
/// queue overflowed), or `configured` is a symbolic link (its swap names other
/// files; see the module's comment).
fn names_config(paths: &[PathBuf], configured: &Path) -> bool {
    let name = configured.file_name();
    paths.is_empty()
        || paths.iter().any(|p| p.file_name() == name)
        || std::fs::symlink_metadata(configured).map_or(true, |m| m.file_type().is_symlink())
}

/// Waits for an event, then until none came for `debounce`. False when nothing
/// happened within [`STOP_CHECK`].
fn next_burst(events: &Receiver<()>, debounce: Duration) -> bool {
    match events.recv_timeout(STOP_CHECK) {
        Ok(()) => {}
        Err(RecvTimeoutError::Timeout) => return false,
        Err(RecvTimeoutError::Disconnected) => {
            std::thread::sleep(STOP_CHECK);
            return false;
        }
    }
    while events.recv_timeout(debounce).is_ok() {}
    true
}

/// The directory `path` is in, and the directory it resolves to (when a symbolic
/// link leads elsewhere).
fn directories(path: &Path) -> Vec<PathBuf> {
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![parent(path)];
    if let Ok(real) = std::fs::canonicalize(path) {
        let d = parent(&real);
        let same = std::fs::canonicalize(&dirs[0]).is_ok_and(|c| c == d);
        if !same {
            dirs.push(d);
        }
    }
    dirs
}

/// The certificate, key and client-CA files of the TLS listeners, with their
/// modification times and sizes: a change to any makes a reload (certificates
/// are part of the configuration).
pub struct CertificateFiles {
    files: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

impl CertificateFiles {
    /// The files `snapshot` reads, as they are now.
    pub fn of(snapshot: &Snapshot) -> Self {
        let mut watch = CertificateFiles { files: Vec::new() };
        watch.follow(snapshot);
        watch
    }

    /// Looks at the files `snapshot` reads from now on: a file already looked
    /// at keeps what was seen of it (a change not yet acted on stays a change).
    pub fn follow(&mut self, snapshot: &Snapshot) {
        let mut paths = Vec::new();
        for l in &snapshot.server.tls {
            for c in &l.settings.certs {
                paths.push(c.cert.clone());
                paths.push(c.key.clone());
            }
            paths.extend(l.settings.client_ca.clone());
        }
        let mut old = std::mem::take(&mut self.files);
        for path in paths {
            match old.iter().position(|(p, _)| *p == path) {
                Some(i) => self.files.push(old.swap_remove(i)),
                None => {
                    let now = modified(&path);
                    self.files.push((path, now));
                }
            }
        }
    }

    /// Looks again; true if any file changed since the last look.
    pub fn changed(&mut self) -> bool {
        let mut changed = false;
        for (path, seen) in &mut self.files {
            let now = modified(path);
            if now != *seen {
                changed = true;
                *seen = now;
            }
        }
        changed
    }
}

fn modified(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_naming_the_file_count_unless_it_is_a_link() {
        let dir = std::env::temp_dir().join(format!("portico-watch-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("portico.toml");
        std::fs::write(&config, "").unwrap();
        let log = vec![dir.join("access.log")];
        assert!(
            !names_config(&log, &config),
            "a log written beside the file"
        );
        assert!(names_config(&[dir.join("portico.toml")], &config));
        // A rename from an editor's temporary file onto the configured name.
        assert!(names_config(
            &[dir.join(".portico.toml.tmp"), config.clone()],
            &config
        ));
        assert!(
            names_config(&[], &config),
            "an overflowed queue names nothing"
        );
        // A ConfigMap-style link: the swap renames `..data`, never the file.
        let link = dir.join("linked.toml");
        std::os::unix::fs::symlink(&config, &link).unwrap();
        assert!(names_config(&[dir.join("..data")], &link));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
