//! The image pieces of a distribution (`flickr30k-images`, `train2014`,
//! `val2014`): their folders and archives in SOURCE, and where each wanted
//! image is in them.

use super::Corpus;
use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where images of one piece can be read from.
pub(super) enum Store {
    Folder(PathBuf),
    TarGz(PathBuf),
    Tar(PathBuf),
    Zip(PathBuf),
}

impl Store {
    /// The folder or archive.
    pub(super) fn path(&self) -> &Path {
        match self {
            Store::Folder(p) | Store::TarGz(p) | Store::Tar(p) | Store::Zip(p) => p,
        }
    }

    /// How an image in this store is named in messages.
    pub(super) fn member_path(&self, member: &str) -> PathBuf {
        match self {
            Store::Folder(_) => PathBuf::from(member),
            _ => self.path().join(member),
        }
    }

    /// The damaged-archive error.
    pub(super) fn damaged(&self, e: impl std::fmt::Display) -> Error {
        Error::bad_file(
            self.path(),
            format!("cannot read the archive (truncated or damaged?): {e}"),
        )
    }
}

/// One image piece (`flickr30k-images`, `train2014`, `val2014`): the stores
/// found and, per wanted file name, where it is (store, member or file).
pub(super) struct Piece {
    pub(super) stores: Vec<Store>,
    index: HashMap<String, (usize, String)>,
}

impl Piece {
    /// A piece the split file does not use.
    pub(super) fn unused() -> Piece {
        Piece {
            stores: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Finds the stores of piece `name` in `source` and indexes them until
    /// every `wanted` file name is found: the folder first, then each archive.
    pub(super) fn locate(
        source: &Path,
        ds: Corpus,
        name: &str,
        wanted: &[&str],
        log: &dyn Fn(&str),
    ) -> Result<Piece> {
        let candidates = [
            (source.join(name), 0),
            (source.join(format!("{name}.tar.gz")), 1),
            (source.join(format!("{name}.tgz")), 1),
            (source.join(format!("{name}.tar")), 2),
            (source.join(format!("{name}.zip")), 3),
        ];
        let mut stores = Vec::new();
        let mut looked_for = Vec::new();
        for (path, kind) in candidates {
            if kind == 0 {
                looked_for.push(format!("{}/ (folder)", path.display()));
                if path.is_dir() {
                    stores.push(Store::Folder(path));
                }
            } else {
                looked_for.push(path.display().to_string());
                if path.is_file() {
                    stores.push(match kind {
                        1 => Store::TarGz(path),
                        2 => Store::Tar(path),
                        _ => Store::Zip(path),
                    });
                }
            }
        }
        if stores.is_empty() {
            return Err(Error::MissingSource {
                folder: source.to_path_buf(),
                what: format!("{} images ({name})", ds.title()),
                looked_for,
                hint: None,
            });
        }
        let wanted: HashSet<&str> = wanted.iter().copied().collect();
        let mut index = HashMap::new();
        for (k, store) in stores.iter().enumerate() {
            if index.len() == wanted.len() {
                break;
            }
            let t = Instant::now();
            log(&format!("indexing {} ...", store.path().display()));
            let mut add = |base: &str, member: String| {
                if wanted.contains(base) && !index.contains_key(base) {
                    index.insert(base.to_string(), (k, member));
                }
            };
            let mut files = 0usize;
            match store {
                Store::Folder(dir) => walk(dir, &mut |p: &Path| {
                    if let Some(b) = p.file_name().and_then(|b| b.to_str()) {
                        files += 1;
                        add(b, p.display().to_string());
                    }
                })?,
                Store::TarGz(p) | Store::Tar(p) => {
                    let file = File::open(p).map_err(|e| Error::io(p, e))?;
                    let reader: Box<dyn Read> = if matches!(store, Store::TarGz(_)) {
                        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
                    } else {
                        Box::new(BufReader::new(file))
                    };
                    for_each_tar_member(store, reader, &mut |member, _| {
                        files += 1;
                        if let Some(b) = usable_base(&member) {
                            let b = b.to_string();
                            add(&b, member);
                        }
                        Ok(true)
                    })?;
                }
                Store::Zip(p) => {
                    let zip = open_zip(p)?;
                    for member in zip_names(&zip, p)? {
                        files += 1;
                        if let Some(b) = usable_base(&member) {
                            let b = b.to_string();
                            add(&b, member);
                        }
                    }
                }
            }
            log(&format!(
                "  {files} files, {} of the {} images wanted from {name} found so far ({:.1} s)",
                index.len(),
                wanted.len(),
                t.elapsed().as_secs_f64()
            ));
        }
        Ok(Piece { stores, index })
    }

    /// Where the image `filename` is: its store and member (or file).
    pub(super) fn find(&self, filename: &str) -> Option<(usize, String)> {
        self.index.get(filename).cloned()
    }
}

/// The file name of an archive member, unless it is a folder or macOS
/// metadata (`__MACOSX/`, `._name`).
fn usable_base(member: &str) -> Option<&str> {
    if member.ends_with('/') || member.split('/').any(|c| c == "__MACOSX") {
        return None;
    }
    base_name(member).filter(|b| !b.starts_with("._"))
}

/// The last component of an archive member's name, unless empty.
pub(super) fn base_name(member: &str) -> Option<&str> {
    member.rsplit('/').next().filter(|b| !b.is_empty())
}

/// Calls `f` on every file under `dir`, at any depth.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if ty.is_dir() {
            walk(&path, f)?;
        } else if path.is_file() {
            f(&path);
        }
    }
    Ok(())
}

/// Opens a zip archive; an unreadable one is a damaged-file error.
pub(super) fn open_zip(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
        Error::bad_file(
            path,
            format!("not a readable zip archive (truncated or damaged?): {e}"),
        )
    })
}

/// The member names of a zip archive.
pub(super) fn zip_names(
    zip: &zip::ZipArchive<BufReader<File>>,
    path: &Path,
) -> Result<Vec<String>> {
    zip.file_names()
        .map(|n| {
            n.map(|n| n.into_owned())
                .map_err(|e| Error::bad_file(path, format!("unreadable member name: {e}")))
        })
        .collect()
}

/// Streams a tar archive, calling `f` with each regular member's name and
/// reader until it returns `false`; any read error is the archive's.
pub(super) fn for_each_tar_member(
    store: &Store,
    reader: Box<dyn Read>,
    f: &mut dyn FnMut(String, &mut dyn Read) -> Result<bool>,
) -> Result<()> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| store.damaged(e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| store.damaged(e))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| store.damaged(e))?
            .to_string_lossy()
            .into_owned();
        if !f(name, &mut entry)? {
            break;
        }
        // Whatever `f` left unread is skipped by the next header read; a
        // truncated member surfaces there as a read error.
    }
    Ok(())
}
