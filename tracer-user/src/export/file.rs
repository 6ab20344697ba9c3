//! Writing an output file whole or not at all. The bytes go to a temporary file created
//! exclusively (`O_EXCL`, an unpredictable name, mode 0600, through `tempfile`) in the same
//! directory, which is then renamed over the destination: readers (a browser reloading a live
//! flamegraph) see the old file or the new one, never half of one, and a name planted in the
//! directory beforehand is never opened or followed. Nothing is left behind on failure.

use std::{
    io::{self, BufWriter, Write},
    path::Path,
};

use crate::error::{Error, Result};

pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let out_err = |source| Error::Output {
        path: path.to_path_buf(),
        source,
    };
    let name = path.file_name().ok_or_else(|| {
        out_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", name.to_string_lossy()))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(out_err)?;
    let mut w = BufWriter::new(tmp);
    write(&mut w).map_err(out_err)?;
    let tmp = w.into_inner().map_err(|e| out_err(e.into_error()))?;
    // Readable as an ordinary output (tempfile creates it 0600).
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(out_err)?;
    tmp.persist(path).map_err(|e| out_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_atomic;

    #[test]
    fn all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.svg");
        write_atomic(&path, |w| w.write_all(b"first")).unwrap();
        let failed = write_atomic(&path, |w| {
            w.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
