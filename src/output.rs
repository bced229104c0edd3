//! Outputs that appear complete or not at all (features `npy`, `plot`;
//! re-exported by [`io`](crate::io)).
//!
//! An [`Output`] writes into a temporary file created exclusively, under a
//! random name, in the destination's directory; [`Output::commit`] renames
//! it over the destination in one step. Several outputs that belong
//! together (the inner and the outer sets of one prediction) are published
//! by [`commit_all`]: all of them or none. Until then the destination is
//! untouched, and a dropped output removes its temporary file.
//!
//! The destination decides how it is written:
//!
//! * a new or existing regular file: through a temporary file and a rename;
//!   an existing file keeps its permissions;
//! * a symbolic link: the file it points to is replaced (the link stays);
//! * an existing non-regular file (a device such as `/dev/null`, a FIFO)
//!   and `-` (standard output): written straight into, never replaced.
//!
//! Temporary files are registered so that a program can remove them when it
//! is interrupted ([`remove_temporaries`], called by the CLI on Ctrl-C and
//! SIGTERM).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, FileProblem, Result};

/// Temporary files not yet committed or removed.
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    TEMPORARIES.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn register(p: &Path) {
    registry().push(p.to_path_buf());
}

fn unregister(p: &Path) {
    registry().retain(|q| q != p);
}

/// Remove every temporary file of an output not yet committed (for a
/// signal handler: the outputs' own cleanup does not run when the process
/// is killed). Safe to call at any time; outputs still being written then
/// fail to commit.
pub fn remove_temporaries() {
    for p in registry().drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

fn write_error(path: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::File { path: path.to_path_buf(), problem: FileProblem::Write { message: e.to_string() } }
}

/// A registered temporary file: removed (and unregistered) when dropped.
struct Temp(Option<tempfile::TempPath>);

impl Temp {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            unregister(t);
        }
    }
}

enum Target {
    /// A temporary file to be renamed over `dest`.
    Temp { tmp: Temp, dest: PathBuf, permissions: Option<Permissions> },
    /// An existing non-regular file, written in place.
    Direct,
    /// Standard output.
    Stdout,
}

/// One output file, written atomically: nothing is at the destination until
/// [`Output::commit`] (or [`commit_all`]) renames it into place.
pub struct Output {
    path: PathBuf,
    target: Target,
    writer: BufWriter<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Output {
    /// Prepare to write `path` (`-` for standard output).
    ///
    /// # Errors
    /// [`Error::File`] with [`FileProblem::Write`] if the destination is a
    /// directory or a dangling link, or its directory is not writable.
    pub fn create(path: impl AsRef<Path>) -> Result<Output> {
        let path = path.as_ref();
        let fail = |e: &dyn std::fmt::Display| write_error(path, e);
        if path.as_os_str() == "-" {
            let out: Box<dyn Write + Send> = Box::new(std::io::stdout());
            return Ok(Output {
                path: path.to_path_buf(),
                target: Target::Stdout,
                writer: BufWriter::new(out),
            });
        }
        let (dest, existing) = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (path.to_path_buf(), None),
            Err(e) => return Err(fail(&e)),
            Ok(_) => {
                // Follows every link: the file that would be read is the one replaced.
                let dest = std::fs::canonicalize(path)
                    .map_err(|e| fail(&format!("cannot follow the link ({e}); refusing to replace it")))?;
                let meta = std::fs::metadata(&dest).map_err(|e| fail(&e))?;
                (dest, Some(meta))
            }
        };
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(fail(&"is a directory"));
            }
            if !meta.is_file() {
                let file = OpenOptions::new().write(true).open(&dest).map_err(|e| fail(&e))?;
                let out: Box<dyn Write + Send> = Box::new(file);
                return Ok(Output {
                    path: path.to_path_buf(),
                    target: Target::Direct,
                    writer: BufWriter::new(out),
                });
            }
        }
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".confseg-").suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(Permissions::from_mode(0o644));
        }
        let tmp = builder.tempfile_in(&dir).map_err(|e| fail(&e))?;
        let (file, tmp) = tmp.into_parts();
        register(&tmp);
        let out: Box<dyn Write + Send> = Box::new(file);
        Ok(Output {
            path: path.to_path_buf(),
            target: Target::Temp {
                tmp: Temp(Some(tmp)),
                dest,
                permissions: existing.map(|m| m.permissions()),
            },
            writer: BufWriter::with_capacity(1 << 20, out),
        })
    }

    /// The path as given.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush, sync and, for a temporary file, give it the destination's
    /// permissions: everything but the rename.
    fn finish(&mut self) -> Result<()> {
        self.writer.flush().map_err(|e| write_error(&self.path, &e))?;
        if let Target::Temp { tmp, permissions, .. } = &self.target {
            let file = File::open(tmp.path()).map_err(|e| write_error(&self.path, &e))?;
            file.sync_all().map_err(|e| write_error(&self.path, &e))?;
            if let Some(p) = permissions {
                std::fs::set_permissions(tmp.path(), p.clone()).map_err(|e| write_error(&self.path, &e))?;
            }
        }
        Ok(())
    }

    /// Publish the output: rename the temporary file over the destination.
    ///
    /// # Errors
    /// [`FileProblem::Write`] if flushing or renaming fails; the
    /// destination is then unchanged.
    pub fn commit(self) -> Result<()> {
        self.stage()?.publish_with_backup(false).map(|_| ())
    }

    /// Finish the output and close it: a [`Staged`] file, published later
    /// with others ([`Publication`]).
    ///
    /// # Errors
    /// [`FileProblem::Write`] if flushing or syncing fails.
    pub fn stage(mut self) -> Result<Staged> {
        self.finish()?;
        let Output { path, target, writer } = self;
        drop(writer);
        Ok(Staged { path, target })
    }
}

/// An output written, synced and closed, not yet at its destination: no
/// file stays open, so a run can stage thousands. Dropping it removes the
/// temporary file.
pub struct Staged {
    path: PathBuf,
    target: Target,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Staged {
    /// Rename into place; returns a backup of the previous destination
    /// when asked for one (a hard link to it), for [`Publication::publish`].
    fn publish_with_backup(self, backup: bool) -> Result<Published> {
        let Staged { path, target } = self;
        match target {
            Target::Temp { mut tmp, dest, .. } => {
                let saved = if backup && dest.exists() { link_backup(&dest) } else { None };
                let Some(t) = tmp.0.take() else {
                    return Err(write_error(&path, &"the temporary file is gone"));
                };
                unregister(&t);
                match t.persist(&dest) {
                    Ok(()) => Ok(Published { dest: Some(dest), backup: saved }),
                    Err(e) => {
                        if let Some(b) = saved {
                            let _ = std::fs::remove_file(b);
                        }
                        Err(write_error(&path, &e.error))
                    }
                }
            }
            Target::Direct | Target::Stdout => Ok(Published { dest: None, backup: None }),
        }
    }
}

/// The outputs of one run, published together at its end: all of them or
/// none. Each output is staged as soon as it is written (finished, synced,
/// closed); nothing appears at a destination until [`Publication::publish`];
/// dropping the publication — an error in a later image, an interrupt
/// ([`remove_temporaries`] on a signal) — removes every staged file.
///
/// ```
/// use confseg::io::{Output, Publication};
/// use std::io::Write;
/// let dir = tempfile::tempdir().unwrap();
/// let mut run = Publication::new();
/// for name in ["a.txt", "b.txt"] {
///     let mut out = Output::create(dir.path().join(name))?;
///     out.write_all(b"sets").unwrap();
///     run.stage(out)?;
/// }
/// assert!(!dir.path().join("a.txt").exists()); // nothing published yet
/// run.publish()?;
/// assert!(dir.path().join("a.txt").exists() && dir.path().join("b.txt").exists());
/// # Ok::<(), confseg::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Publication {
    staged: Vec<Staged>,
}

impl Publication {
    /// An empty publication.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Finish `output` and keep it for publication.
    ///
    /// # Errors
    /// As [`Output::stage`].
    pub fn stage(&mut self, output: Output) -> Result<()> {
        self.staged.push(output.stage()?);
        Ok(())
    }

    /// Stage a text file (a table, a colour table) to publish at `path`.
    ///
    /// # Errors
    /// As [`Output::create`]; [`FileProblem::Write`] naming the file.
    pub fn stage_text(&mut self, path: impl AsRef<Path>, text: &str) -> Result<()> {
        let path = path.as_ref();
        let mut out = Output::create(path)?;
        out.write_all(text.as_bytes()).map_err(|e| Error::File {
            path: path.to_path_buf(),
            problem: FileProblem::Write { message: e.to_string() },
        })?;
        self.stage(out)
    }

    /// Stage several outputs.
    ///
    /// # Errors
    /// As [`Output::stage`], for the first that fails (none of these is kept).
    pub fn stage_all(&mut self, outputs: Vec<Output>) -> Result<()> {
        let staged = outputs.into_iter().map(Output::stage).collect::<Result<Vec<_>>>()?;
        self.staged.extend(staged);
        Ok(())
    }

    /// Number of staged outputs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.staged.len()
    }

    /// Whether nothing is staged.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty()
    }

    /// Publish every staged output: either every destination is replaced,
    /// or (when a rename fails midway) those already replaced are restored
    /// from hard-link backups and every temporary file is removed.
    ///
    /// # Errors
    /// The first failure; no output is then published (up to a failing
    /// restore, which is reported in the message).
    pub fn publish(self) -> Result<()> {
        let mut done: Vec<Published> = Vec::new();
        let mut pending = self.staged.into_iter();
        for o in pending.by_ref() {
            match o.publish_with_backup(true) {
                Ok(p) => done.push(p),
                Err(e) => {
                    let mut restore_failed = Vec::new();
                    for p in done.into_iter().rev() {
                        let Some(dest) = p.dest else { continue };
                        let ok = match p.backup {
                            Some(b) => std::fs::rename(&b, &dest).is_ok(),
                            None => std::fs::remove_file(&dest).is_ok(),
                        };
                        if !ok {
                            restore_failed.push(dest.display().to_string());
                        }
                    }
                    return Err(if restore_failed.is_empty() {
                        e
                    } else {
                        let msg = format!("{e}; could not restore {}", restore_failed.join(", "));
                        Error::File {
                            path: PathBuf::from(restore_failed.join(", ")),
                            problem: FileProblem::Write { message: msg },
                        }
                    });
                }
            }
        }
        for p in done {
            if let Some(b) = p.backup {
                let _ = std::fs::remove_file(b);
            }
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// A renamed output and the backup of what it replaced.
struct Published {
    dest: Option<PathBuf>,
    backup: Option<PathBuf>,
}

/// A hard link to `dest` under a fresh hidden name in its directory, so
/// that a replaced file can be restored.
fn link_backup(dest: &Path) -> Option<PathBuf> {
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name =
        tempfile::Builder::new().prefix(".confseg-backup-").make_in(dir, |p| std::fs::hard_link(dest, p));
    name.ok().and_then(|t| t.keep().ok()).map(|(_, p)| p)
}

/// Publish several outputs together: either every destination is replaced,
/// or (when a rename fails midway) those already replaced are restored from
/// hard-link backups and every temporary file is removed.
///
/// # Errors
/// The first failure; no output is then published (up to a failing
/// restore, which is reported in the message).
pub fn commit_all(outputs: Vec<Output>) -> Result<()> {
    let mut run = Publication::new();
    run.stage_all(outputs)?;
    run.publish()
}

/// Write a file atomically: `write` fills a temporary file in the same
/// directory, which then replaces `path` in one rename (or is written
/// straight into a device, FIFO or `-`). On any error the temporary file is
/// removed and `path` is left as it was.
///
/// # Errors
/// [`Error::File`] with [`FileProblem::Write`] if the directory is not
/// writable or `write` fails.
pub fn write_atomic<F>(path: impl AsRef<Path>, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let path = path.as_ref();
    let mut out = Output::create(path)?;
    write(&mut out).map_err(|e| write_error(path, &e))?;
    out.commit()
}

/// Where a path resolves to, whether or not the file exists yet: its
/// folder resolved (symbolic links, `.`, `..`) and its file name.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match (parent.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// Whether two output paths name the same file, before either exists
/// (`I.npy` and `./I.npy`, or a link to the same folder).
///
/// ```
/// use confseg::output::same_destination;
/// use std::path::Path;
/// assert!(same_destination(Path::new("I.npy"), Path::new("./I.npy")));
/// assert!(!same_destination(Path::new("I.npy"), Path::new("O.npy")));
/// ```
#[must_use]
pub fn same_destination(a: &Path, b: &Path) -> bool {
    resolved(a) == resolved(b)
}

/// Whether the folder `dir` (an output folder) is the folder holding
/// `input`: outputs written there would be found as inputs by the next run
/// over that folder, or replace an input.
#[must_use]
pub fn is_input_folder(dir: &Path, input: &Path) -> bool {
    let Some(folder) = resolved(input).parent().map(Path::to_path_buf) else { return false };
    let dir = resolved(dir);
    dir == folder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_appears_before_commit_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        let mut o = Output::create(&p).unwrap();
        o.write_all(b"hello").unwrap();
        assert!(!p.exists());
        drop(o);
        assert_eq!(names(dir.path()), Vec::<String>::new());
        let mut o = Output::create(&p).unwrap();
        o.write_all(b"hello").unwrap();
        o.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(names(dir.path()), vec!["a.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn links_are_written_through_and_permissions_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        std::fs::write(&target, b"old").unwrap();
        std::fs::set_permissions(&target, Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_atomic(&link, |w| w.write_all(b"new")).unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        // a dangling link is refused, not replaced
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write_atomic(&dangling, |w| w.write_all(b"x")).is_err());
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
        // a device is written into, not replaced
        write_atomic("/dev/null", |w| w.write_all(b"x")).unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }

    #[test]
    fn commit_all_restores_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("sub").join("b");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(&a, b"old a").unwrap();
        let mut oa = Output::create(&a).unwrap();
        oa.write_all(b"new a").unwrap();
        let mut ob = Output::create(&b).unwrap();
        ob.write_all(b"new b").unwrap();
        // make the second rename fail: its directory disappears
        let Target::Temp { tmp, .. } = &ob.target else { panic!("temp expected") };
        std::fs::remove_file(tmp.path()).unwrap();
        let e = commit_all(vec![oa, ob]).unwrap_err();
        assert!(e.to_string().contains('b'), "{e}");
        assert_eq!(std::fs::read(&a).unwrap(), b"old a");
        assert!(!b.exists());
        assert_eq!(names(dir.path()), vec!["a", "sub"]);
        assert!(registry().is_empty() || !registry().iter().any(|p| p.starts_with(dir.path())));
    }
}
