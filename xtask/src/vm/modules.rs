//! modules

use super::*;

/// Every module file under `moddir/kernel`, by module name (`-` folded to `_`).
pub(super) fn module_index(moddir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(stem) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once(".ko"))
                .map(|(s, _)| s.replace('-', "_"))
            {
                out.insert(stem, p);
            }
        }
    }
    out
}

/// A module's bytes, decompressed.
pub(super) fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(path).with_context(|| format!("reading {}", path.display())),
        Some(t) => {
            let out = Command::new(t)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("running {t} -dc {}", path.display()))?;
            ensure!(
                out.status.success(),
                "{t} -dc {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(out.stdout)
        }
    }
}

/// The `depends=` field of a module's `.modinfo` section (what `modinfo -F depends` prints).
pub(super) fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let mut i = 0;
    while let Some(pos) = ko[i..].windows(key.len()).position(|w| w == key) {
        let at = i + pos;
        if at == 0 || ko[at - 1] == 0 {
            let start = at + key.len();
            let end = ko[start..]
                .iter()
                .position(|&b| b == 0)
                .map_or(ko.len(), |e| start + e);
            return String::from_utf8_lossy(&ko[start..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect();
        }
        i = at + 1;
    }
    Vec::new()
}

/// The wanted modules that exist as files, with their dependencies, dependencies first.
pub(super) fn resolve_modules(moddir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let index = module_index(moddir);
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        // Not a file: built in (or absent, which the guest reports).
        let Some(path) = index.get(name) else {
            return Ok(());
        };
        let bytes = module_bytes(path)?;
        for dep in module_depends(&bytes) {
            visit(&dep, index, seen, order)?;
        }
        order.push((name.to_string(), bytes));
        Ok(())
    }
    for m in WANTED_MODULES {
        visit(m, &index, &mut seen, &mut order)?;
    }
    Ok(order)
}
