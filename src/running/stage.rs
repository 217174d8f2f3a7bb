//! Staging the contexts of the builds that run as Convox uploads them
//! (`inputs::upload`): each in its directory under this run's temporary
//! directory, made before the builds start and removed, whole, when the
//! run ends (on an interrupt too).

use crate::inputs::upload;
use crate::plan::Plan;
use anyhow::{anyhow, Result};
use std::path::PathBuf;

/// The run's staged contexts; dropping it removes them.
#[derive(Debug, Default)]
pub struct Staged {
    dirs: Vec<PathBuf>,
}

/// Stage the context of each build in `needed` that has a stage.
pub fn stage_all(plan: &Plan, needed: &[usize]) -> Result<Staged> {
    let mut staged = Staged::default();
    for &i in needed {
        let Some(st) = &plan.builds[i].stage else {
            continue;
        };
        // The run's directory, so that an interrupt removes all of it.
        let Some(run_dir) = st.dir.parent().map(PathBuf::from) else {
            continue;
        };
        if !staged.dirs.contains(&run_dir) {
            crate::running::interrupt::track_temp_file(run_dir.clone());
            staged.dirs.push(run_dir);
        }
        if st.dir.exists() {
            std::fs::remove_dir_all(&st.dir)
                .map_err(|e| anyhow!("cannot clear {}: {e}", st.dir.display()))?;
        }
        upload::stage(&st.root, &st.context, &st.dir).map_err(|e| {
            e.context(format!(
                "[{}] cannot stage {} as Convox uploads it",
                plan.builds[i].services[0],
                st.context.display()
            ))
        })?;
    }
    Ok(staged)
}

impl Drop for Staged {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
            crate::running::interrupt::untrack_temp_file(d);
        }
    }
}
