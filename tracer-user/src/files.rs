//! Where gotrace writes its files, safely when it runs as root in directories other users can
//! reach.
//!
//! A directory is opened once, component by component without following a symlink an
//! untrusted user could have planted, and checked on the open descriptor: it must belong to
//! root or to the user who invoked gotrace (`SUDO_UID` under sudo) and be writable by nobody
//! else (a sticky directory such as /tmp excepted: others cannot replace our entries there).
//! Every file is then written relative to that descriptor: a temporary file with an
//! unpredictable name created exclusively (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600), renamed over
//! the destination within the same directory. A name planted beforehand is never opened or
//! followed (the rename replaces it), a directory swapped after the check cannot redirect the
//! writes, and readers (a browser reloading a live flamegraph) see the old file or the new one,
//! never half of one.
//!
//! Paths are checked when a command starts, so that a bad one fails in the first second; a
//! write that still fails later (a full disk, a directory removed meanwhile) moves the session's
//! files to a fresh directory instead of losing them ([`Sink`]).

use std::{
    collections::VecDeque,
    ffi::{OsStr, OsString},
    io::{self, Write},
    os::{
        fd::{AsFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, CWD};

use crate::error::{Error, Result};

/// A directory gotrace writes into, held open (see the module's documentation).
#[derive(Debug)]
pub struct OutDir {
    fd: OwnedFd,
    path: PathBuf,
    /// The parent and name of the directory when gotrace made it: an empty one is removed
    /// again when dropped (the command failed before writing anything).
    created: Option<(OwnedFd, OsString)>,
}

impl OutDir {
    /// Opens directory `path`, creating it and its missing parents (mode 0755), and checks
    /// that gotrace can write into it.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    /// Opens the existing directory `path` and checks that gotrace can write into it.
    pub fn open_existing(path: &Path) -> Result<Self> {
        Self::open_with(path, false)
    }

    /// Creates directory `path`, which must not exist yet (its parent must), mode 0755. Its
    /// parent may belong to anyone: the new directory is gotrace's own.
    pub fn create_new(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| bad(path, "not a directory name"))?;
        let (parent, _) = walk(parent_of(path), false)?;
        rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)).map_err(|e| match e {
            rustix::io::Errno::EXIST => bad(path, "it exists already"),
            e => io_error(path, e),
        })?;
        let fd = open_dir_at(&parent, name).map_err(|e| io_error(path, e))?;
        Self::checked(fd, path, Some((parent, name.to_os_string())))
    }

    /// A new directory with an unpredictable name under the system's temporary directory.
    pub fn fresh() -> Result<Self> {
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("gotrace-")
            .tempdir_in(&tmp)
            .map_err(|source| Error::Output { path: tmp, source })?;
        // Kept: it holds what could not be written where it was asked.
        Self::open_existing(&dir.keep())
    }

    fn open_with(path: &Path, mkdir: bool) -> Result<Self> {
        let (fd, created) = walk(path, mkdir)?;
        Self::checked(fd, path, created)
    }

    /// Checks the opened directory's owner and mode, then that a file can be created in it.
    fn checked(fd: OwnedFd, path: &Path, created: Option<(OwnedFd, OsString)>) -> Result<Self> {
        let dir = OutDir {
            fd,
            path: path.to_path_buf(),
            created,
        };
        let st = rfs::fstat(&dir.fd).map_err(|e| io_error(path, e))?;
        untrusted(&st).map_or(Ok(()), |why| Err(bad(path, &why)))?;
        let (probe, _) = dir
            .create_temp(OsStr::new("gotrace-probe"))
            .map_err(|e| bad(path, &format!("cannot create a file in it ({e})")))?;
        let _ = rfs::unlinkat(&dir.fd, &probe, AtFlags::empty());
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes file `name` in this directory whole or not at all, replacing any file (or
    /// symlink, which is not followed) of that name.
    pub fn write(&self, name: &OsStr, bytes: &[u8]) -> Result<()> {
        let path = self.path.join(name);
        if Path::new(name).file_name() != Some(name) {
            return Err(bad(&path, "not a file name"));
        }
        let (tmp, file) = self.create_temp(name).map_err(|e| io_error(&path, e))?;
        let done = (|| {
            (&file).write_all(bytes)?;
            // Readable as an ordinary output (created 0600, before anything was in it).
            rfs::fchmod(&file, Mode::from_raw_mode(0o644))?;
            rfs::renameat(&self.fd, &tmp, &self.fd, name)?;
            Ok(())
        })();
        done.map_err(|source: io::Error| {
            let _ = rfs::unlinkat(&self.fd, &tmp, AtFlags::empty());
            Error::Output { path, source }
        })
    }

    /// Opens file `name` for reading and writing, created (mode 0600) if missing, never
    /// through a symlink: a lock file.
    pub fn open_file(&self, name: &OsStr) -> Result<std::fs::File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rfs::openat(&self.fd, name, flags, Mode::RUSR | Mode::WUSR)
            .map(Into::into)
            .map_err(|e| io_error(&self.path.join(name), e))
    }

    /// The bytes of file `name`, never read through a symlink.
    pub fn read(&self, name: &OsStr) -> Result<Vec<u8>> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let path = self.path.join(name);
        let fd =
            rfs::openat(&self.fd, name, flags, Mode::empty()).map_err(|e| io_error(&path, e))?;
        let mut bytes = Vec::new();
        io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes)
            .map_err(|source| Error::Output { path, source })?;
        Ok(bytes)
    }

    /// Removes file `name`, if it is there.
    pub fn remove(&self, name: &OsStr) {
        let _ = rfs::unlinkat(&self.fd, name, AtFlags::empty());
    }

    /// The names of the entries in this directory.
    pub fn names(&self) -> Result<Vec<OsString>> {
        let err = |e| io_error(&self.path, e);
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let fd = rfs::openat(&self.fd, ".", flags, Mode::empty()).map_err(err)?;
        let mut names = Vec::new();
        for entry in rfs::Dir::new(fd).map_err(err)? {
            let name = entry.map_err(err)?.file_name().to_bytes().to_vec();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(&name).to_os_string());
            }
        }
        Ok(names)
    }

    /// Opens the existing directory `path` to read from it: no check that gotrace could write
    /// there (a user reads a directory root keeps), symlinks followed as [`OutDir::open`] does.
    pub fn open_read(path: &Path) -> Result<Self> {
        let (fd, _) = walk(path, false)?;
        Ok(OutDir {
            fd,
            path: path.to_path_buf(),
            created: None,
        })
    }

    /// Opens subdirectory `name` (never through a symlink), creating it (mode 0755) when
    /// `create`. It needs no check of its own: only who may write here could have made it.
    pub fn subdir(&self, name: &OsStr, create: bool) -> Result<OutDir> {
        let path = self.path.join(name);
        if Path::new(name).file_name() != Some(name) {
            return Err(bad(&path, "not a file name"));
        }
        if create {
            match rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io_error(&path, e)),
            }
        }
        let fd = open_dir_at(&self.fd, name).map_err(|e| io_error(&path, e))?;
        Ok(OutDir {
            fd,
            path,
            created: None,
        })
    }

    /// Renames entry `from` to `to` in this directory, failing rather than replacing an
    /// existing `to`.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<()> {
        rfs::renameat_with(&self.fd, from, &self.fd, to, rfs::RenameFlags::NOREPLACE)
            .map_err(|e| io_error(&self.path.join(to), e))
    }

    /// Removes entry `name`, a file or a whole directory tree, never following a symlink.
    pub fn remove_all(&self, name: &OsStr) -> Result<()> {
        let path = self.path.join(name);
        match self.stat(name) {
            None => return Ok(()),
            Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                let sub = self.subdir(name, false)?;
                for entry in sub.names()? {
                    sub.remove_all(&entry)?;
                }
                rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
            }
            Some(_) => rfs::unlinkat(&self.fd, name, AtFlags::empty()),
        }
        .map_err(|e| io_error(&path, e))
    }

    /// The status of entry `name` (a symlink's own), if it exists.
    pub fn stat(&self, name: &OsStr) -> Option<Stat> {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()
    }

    /// `.<name>.<16 random hex digits>.tmp`, created exclusively, never through a symlink.
    fn create_temp(&self, name: &OsStr) -> rustix::io::Result<(OsString, std::fs::File)> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        loop {
            let mut random = [0u8; 8];
            rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())?;
            let mut tmp = OsString::from(".");
            tmp.push(name);
            tmp.push(format!(".{:016x}.tmp", u64::from_ne_bytes(random)));
            match rfs::openat(
                &self.fd,
                &tmp,
                flags | OFlags::CLOEXEC,
                Mode::RUSR | Mode::WUSR,
            ) {
                Ok(fd) => return Ok((tmp, fd.into())),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if let Some((parent, name)) = &self.created {
            // Fails (ENOTEMPTY) once anything was written: then the directory stays.
            let _ = rfs::unlinkat(parent, name, AtFlags::REMOVEDIR);
        }
    }
}

/// A single output file (`--flamegraph FILE`, `record -o FILE`) in its directory, which must
/// exist.
#[derive(Debug)]
pub struct OutFile {
    pub sink: Sink,
    name: OsString,
}

impl OutFile {
    /// Checks that `path` can be written: its directory exists, is safe and writable, and
    /// `path` is not a directory.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .ok_or_else(|| bad(path, "not a file name"))?;
        let dir = OutDir::open_existing(parent_of(path))?;
        if let Ok(st) = rfs::statat(&dir.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(bad(path, "it is a directory: give a file name"));
            }
        }
        Ok(OutFile {
            sink: Sink::new(dir),
            name: name.to_os_string(),
        })
    }

    /// Writes the file (see [`Sink::write`]); returns where it went.
    pub fn write(&mut self, bytes: &[u8]) -> Result<PathBuf> {
        self.sink.write(&self.name, bytes)
    }

    /// Where the file is (or would be) now.
    pub fn path(&self) -> PathBuf {
        self.sink.dir().join(&self.name)
    }
}

/// Where a command's files go: the directory asked for and, once writing there failed, a
/// fresh one gotrace made instead, so that a session's results are not lost.
#[derive(Debug)]
pub struct Sink {
    dir: OutDir,
    moved: Option<(Error, OutDir)>,
}

impl Sink {
    pub fn new(dir: OutDir) -> Self {
        Sink { dir, moved: None }
    }

    /// Writes file `name` whole; returns its path. After a failure, this and every later file
    /// go to a fresh directory ([`OutDir::fresh`]); an error only when that fails too.
    pub fn write(&mut self, name: &OsStr, bytes: &[u8]) -> Result<PathBuf> {
        if self.moved.is_none() {
            match self.dir.write(name, bytes) {
                Ok(()) => return Ok(self.dir.path.join(name)),
                // Failing to make a fresh directory too, the first failure is the one to tell.
                Err(error) => match OutDir::fresh() {
                    Ok(fresh) => {
                        log::warn!("{error}; writing to {} instead", fresh.path.display());
                        self.moved = Some((error, fresh));
                    }
                    Err(_) => return Err(error),
                },
            }
        }
        let (_, fresh) = self.moved.as_ref().expect("moved above");
        fresh.write(name, bytes)?;
        Ok(fresh.path.join(name))
    }

    /// The directory files go to now.
    pub fn dir(&self) -> &Path {
        match &self.moved {
            Some((_, fresh)) => &fresh.path,
            None => &self.dir.path,
        }
    }

    /// An error when some file could not be written where it was asked (saying where it went).
    pub fn finish(self) -> Result<()> {
        match self.moved {
            None => Ok(()),
            Some((error, fresh)) => Err(Error::OutputMoved {
                error: Box::new(error),
                to: fresh.path.clone(),
            }),
        }
    }
}

/// `path`'s directory: `.` for a bare name.
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The user gotrace works for: the one who ran sudo, else the real user.
fn invoking_uid() -> u32 {
    crate::util::sudo_user().map_or(rustix::process::getuid().as_raw(), |(uid, _)| uid)
}

/// Why a directory is not safe to write into or to follow symlinks from, if it is not:
/// another user owns it, or others can write to it (and it is not sticky).
fn untrusted(st: &Stat) -> Option<String> {
    let owner = st.st_uid;
    if owner != 0 && owner != invoking_uid() {
        return Some(format!(
            "it belongs to uid {owner}, not to you or root, so its owner could redirect gotrace's files: use a directory of your own, or a new path"
        ));
    }
    let mode = Mode::from_raw_mode(st.st_mode);
    if mode.intersects(Mode::WGRP | Mode::WOTH) && !mode.contains(Mode::SVTX) {
        return Some(format!(
            "others can write to it (mode {:o}), so they could redirect gotrace's files: use a directory only you can write to, or a new path",
            mode.bits() & 0o7777
        ));
    }
    None
}

fn open_dir_at(dir: impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::empty())
}

/// Opens directory `path` one component at a time, creating missing ones when `mkdir`. A
/// symlink is followed only from a directory no untrusted user can write to (in a sticky one,
/// only a symlink of root's or the invoking user's, as the kernel's `protected_symlinks`
/// does). Returns the directory and, when this call created it, its parent and name.
fn walk(path: &Path, mkdir: bool) -> Result<(OwnedFd, Option<(OwnedFd, OsString)>)> {
    let err = |e| io_error(path, e);
    let mut queue: VecDeque<OsString> = VecDeque::new();
    let mut cur = open_dir_at(CWD, OsStr::new(".")).map_err(err)?;
    let mut created = None;
    let mut links = 0;
    push_front(&mut queue, path);
    while let Some(name) = queue.pop_front() {
        if name == "/" {
            cur = open_dir_at(CWD, &name).map_err(err)?;
            created = None;
            continue;
        }
        let next = match open_dir_at(&cur, &name) {
            Err(rustix::io::Errno::NOENT) if mkdir => {
                match rfs::mkdirat(&cur, &name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(err(e)),
                }
                let fd = open_dir_at(&cur, &name).map_err(err)?;
                created = Some((cur, name));
                cur = fd;
                continue;
            }
            Err(rustix::io::Errno::NOENT) => {
                let at = Path::new(&name);
                return Err(bad(path, &format!("{} does not exist", at.display())));
            }
            Err(e @ (rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR)) => {
                let st = rfs::statat(&cur, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(err)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                    let what = Path::new(&name).display();
                    return Err(bad(path, &format!("{what} is not a directory")));
                }
                links += 1;
                if links > 40 {
                    return Err(err(e));
                }
                let dir = rfs::fstat(&cur).map_err(err)?;
                let sticky_unsafe = Mode::from_raw_mode(dir.st_mode).contains(Mode::WOTH)
                    && st.st_uid != 0
                    && st.st_uid != invoking_uid();
                if let Some(why) = untrusted(&dir).or(sticky_unsafe.then(|| {
                    format!(
                        "the symlink belongs to uid {}, in a directory others can write to",
                        st.st_uid
                    )
                })) {
                    let link = Path::new(&name).display();
                    return Err(bad(
                        path,
                        &format!("refusing to follow the symlink {link}: its directory is not safe ({why})"),
                    ));
                }
                let target = rfs::readlinkat(&cur, &name, Vec::new()).map_err(err)?;
                push_front(&mut queue, Path::new(OsStr::from_bytes(target.as_bytes())));
                continue;
            }
            r => r.map_err(err)?,
        };
        created = None;
        cur = next;
    }
    Ok((cur, created))
}

/// Puts `path`'s components at the front of `queue`, in order (`/` for the root).
fn push_front(queue: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::RootDir => queue.push_front("/".into()),
            Component::ParentDir => queue.push_front("..".into()),
            Component::Normal(n) => queue.push_front(n.to_os_string()),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

fn bad(path: &Path, problem: &str) -> Error {
    Error::OutputPath {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    }
}

fn io_error(path: &Path, e: rustix::io::Errno) -> Error {
    Error::Output {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = OutDir::open_existing(tmp.path()).unwrap();
        dir.write(OsStr::new("out.svg"), b"first").unwrap();
        // A write that cannot finish (the name is a non-empty directory) leaves the old state.
        std::fs::create_dir_all(tmp.path().join("sub/x")).unwrap();
        assert!(dir.write(OsStr::new("sub"), b"half").is_err());
        assert_eq!(std::fs::read(tmp.path().join("out.svg")).unwrap(), b"first");
        let mut left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, ["out.svg", "sub"], "no temporary file left behind");
    }

    #[test]
    fn planted_symlinks_are_replaced_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&victim, out.join("report.json")).unwrap();
        OutDir::open(&out)
            .unwrap()
            .write(OsStr::new("report.json"), b"{}")
            .unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!out.join("report.json").is_symlink());
        assert_eq!(std::fs::read(out.join("report.json")).unwrap(), b"{}");
    }

    #[test]
    fn created_directory_removed_when_left_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let empty = tmp.path().join("a/empty");
        drop(OutDir::open(&empty).unwrap());
        assert!(!empty.exists() && tmp.path().join("a").exists());
        let used = tmp.path().join("used");
        let dir = OutDir::create_new(&used).unwrap();
        dir.write(OsStr::new("f"), b"x").unwrap();
        drop(dir);
        assert!(used.join("f").exists());
        assert!(OutDir::create_new(&used).is_err(), "exists already");
    }

    #[test]
    fn trees_are_removed_without_following_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let dir = OutDir::open(&tmp.path().join("store")).unwrap();
        let entry = dir.subdir(OsStr::new("entry"), true).unwrap();
        entry.write(OsStr::new("f"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("store/entry/link")).unwrap();
        assert!(
            dir.rename(OsStr::new("entry"), OsStr::new("entry"))
                .is_err(),
            "never replaces"
        );
        dir.rename(OsStr::new("entry"), OsStr::new("moved"))
            .unwrap();
        dir.remove_all(OsStr::new("moved")).unwrap();
        assert!(dir.names().unwrap().is_empty());
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
        assert!(dir.subdir(OsStr::new("../outside"), false).is_err());
    }

    #[test]
    fn bad_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let msg = |r: Result<OutDir>| r.unwrap_err().to_string();
        assert!(msg(OutDir::open(&file)).contains("is not a directory"));
        assert!(msg(OutDir::open_existing(&tmp.path().join("nope"))).contains("does not exist"));
        assert!(OutFile::open(tmp.path())
            .unwrap_err()
            .to_string()
            .contains("is a directory"));
        let loose = tmp.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(msg(OutDir::open(&loose)).contains("others can write to it (mode 777)"));
    }
}
