//! `chat-server backup --db chat.db OUT`: a copy of the database while the server runs and
//! writes. The copy is one consistent moment of the file (`VACUUM INTO`, which reads one
//! snapshot; in WAL mode a reader never blocks the writer), a single file that needs no `-wal`
//! beside it, compacted, readable by its owner only. It is written under a temporary name
//! beside OUT, synced, checked (`PRAGMA integrity_check`) and only then renamed to OUT, so
//! OUT is either a whole, checked backup or not there: a backup cut short (a full disk, a
//! killed process) leaves at most a `.OUT.….partial` file, never a damaged OUT. The copy is
//! then recorded in the database (`backups`), so the server's metrics say how old the newest
//! backup is.

use std::path::Path;

use anyhow::Context;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::eventlog::sqlite::{self, operator};

/// Copies the database at `db` to `out`; replaces an existing `out` only if `force`.
/// Returns what to tell the operator.
pub async fn run(db: &Path, out: &Path, force: bool) -> anyhow::Result<String> {
    if !force && out.symlink_metadata().is_ok() {
        anyhow::bail!(
            "{} exists: name a new file, or add --force to replace it",
            out.display()
        );
    }
    let mut source = sqlite::open_existing(db).await?;
    if let (Ok(db_file), Ok(out_file)) = (db.canonicalize(), out.canonicalize())
        && db_file == out_file
    {
        anyhow::bail!("{} is the database itself: name another file", out.display());
    }
    let name = out
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} is not a file name", out.display()))?;
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Readable and writable by its owner only, as the database is; removed if anything
    // below fails.
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let partial_path = partial
        .path()
        .to_str()
        .with_context(|| format!("{} is not a path SQLite can take (not UTF-8)", partial.path().display()))?
        .to_owned();
    operator::vacuum_into(&mut source, &partial_path)
        .await
        .with_context(|| format!("cannot copy {} to {}", db.display(), dir.display()))?;
    partial
        .as_file()
        .sync_all()
        .with_context(|| format!("cannot sync {partial_path}"))?;

    // The copy as someone restoring it will open it: on its own, and read only.
    let mut copy = SqliteConnectOptions::new()
        .filename(partial.path())
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("cannot open the copy {partial_path}"))?;
    let problems = operator::integrity_check(&mut copy)
        .await
        .with_context(|| format!("cannot check the copy {partial_path}"))?;
    let _ = copy.close().await;
    if problems != ["ok"] {
        anyhow::bail!("the copy failed its integrity check: {}", problems.join("; "));
    }

    let bytes = partial.as_file().metadata().map(|meta| meta.len()).unwrap_or(0);
    if force {
        partial.persist(out).map_err(|error| error.error)
    } else {
        // Refuses, rather than replaces, a file that appeared meanwhile.
        partial.persist_noclobber(out).map_err(|error| error.error)
    }
    .with_context(|| format!("cannot rename the copy to {}", out.display()))?;
    // The rename itself survives a power cut once the directory is synced.
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    // The backup is made either way; only the metrics would not know of it (a database the
    // backup's user may read but not write, or one a server of this version never opened).
    let recorded = operator::record_backup(&mut source, &out.display().to_string(), bytes).await;
    let _ = source.close().await;
    if let Err(error) = recorded {
        eprintln!("chat-server backup: the backup is made, but cannot be recorded in the database: {error}");
    }
    Ok(format!(
        "{} copied to {} ({:.1} MiB; integrity check ok)",
        db.display(),
        out.display(),
        bytes as f64 / (1024.0 * 1024.0)
    ))
}
