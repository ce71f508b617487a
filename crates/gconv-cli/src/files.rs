//! Output files that are replaced whole or not at all.

use std::io::{self, BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes `path` through a temporary file in the same directory: `write` fills it, it is
/// flushed to disk, then renamed over `path`. On any error `path` is left exactly as it was
/// and the temporary file is removed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<()> {
    let describe = || format!("cannot write {}", path.display());
    if path.is_dir() {
        bail!("cannot write {}: it is a directory", path.display());
    }
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !directory.is_dir() {
        bail!(
            "cannot write {}: directory {} does not exist",
            path.display(),
            directory.display()
        );
    }
    // The temporary file's own name stays out of the message: the user never gave it.
    let temporary = tempfile::Builder::new()
        .prefix(".gconv-output-")
        .suffix(".tmp")
        .tempfile_in(directory)
        .map_err(|error| io::Error::from(error.kind()))
        .with_context(describe)?;
    {
        let mut buffered = BufWriter::new(temporary.as_file());
        write(&mut buffered).with_context(describe)?;
        buffered.flush().with_context(describe)?;
    }
    temporary.as_file().sync_all().with_context(describe)?;
    temporary
        .persist(path)
        .map_err(|error| io::Error::from(error.error.kind()))
        .with_context(describe)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("out.txt");
        std::fs::write(&path, "old").unwrap();
        let error = write_atomically(&path, |out| {
            out.write_all(b"half")?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
        assert!(format!("{error:#}").contains("disk on fire"), "{error:#}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old");
        assert_eq!(std::fs::read_dir(directory.path()).unwrap().count(), 1);

        write_atomically(&path, |out| out.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert!(write_atomically(directory.path(), |_| Ok(())).is_err());
    }
}
