//! The run's private directory (`inputs::staging::run_dir`): made fresh and
//! 0700 before the first build that needs it, holding the staged tree of the
//! contexts that run (`inputs::staging`) and the bake's metadata files, and
//! removed, whole, when the run ends (on an interrupt too: the interrupt
//! handler closes the staging's gate first, so nothing is made after).

use crate::inputs::staging::{self, Tree};
use crate::plan::Plan;
use crate::running::interrupt;
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

/// The run's directory, once made; dropping it removes it.
#[derive(Debug, Default)]
pub struct Staged {
    dir: Option<PathBuf>,
}

/// Make the run's directory when a build in `needed` (or the bake) needs
/// it, and stage the context of each build there that has a stage.
pub fn stage_all(plan: &Plan, needed: &[usize]) -> Result<Staged> {
    let wants = plan.bake.is_some()
        || needed
            .iter()
            .any(|&i| plan.builds[i].stage.is_some() || plan.builds[i].metadata_file.is_some());
    if !wants {
        return Ok(Staged::default());
    }
    let dir = staging::run_dir().to_path_buf();
    interrupt::track_temp_file(dir.clone());
    let staged = Staged {
        dir: Some(dir.clone()),
    };
    interrupt::gated(&mut || {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir)
    })
    .map_err(|e| {
        anyhow!(
            "cannot create this run's private directory {}: {e} (it must not exist; set TMPDIR to another directory)",
            dir.display()
        )
    })?;
    let mut tree: Option<Tree> = None;
    for &i in needed {
        let b = &plan.builds[i];
        let Some(st) = &b.stage else { continue };
        let who = &b.services[0];
        let fail = |e: anyhow::Error| {
            e.context(format!(
                "[{who}] cannot stage {} as Convox uploads it",
                st.context.display()
            ))
        };
        let t = match &mut tree {
            Some(t) => t,
            None => tree.insert(
                Tree::new(
                    &st.root,
                    &staging::tree_dir(),
                    &st.context,
                    &interrupt::gated,
                )
                .map_err(fail)?,
            ),
        };
        t.stage(&st.prefix).map_err(fail)?;
        dockerfile_reached(b, st)?;
    }
    if let Some(t) = tree {
        t.finish()?;
    }
    Ok(staged)
}

/// The Dockerfile inside a staged context must be there, links followed: a
/// link that leads out of what Convox uploads would leave the rack without
/// it.
fn dockerfile_reached(b: &crate::plan::Build, st: &crate::plan::Stage) -> Result<()> {
    let Some(d) = &b.spec.dockerfile else {
        return Ok(());
    };
    let Ok(rel) = Path::new(d).strip_prefix(&st.context) else {
        return Ok(());
    };
    if std::fs::metadata(st.dir.join(rel)).is_err() {
        bail!(
            "[{}] the Dockerfile {d} is a link that leads outside what Convox uploads (the app directory less its .dockerignore), so the rack could not read it",
            b.services[0]
        );
    }
    Ok(())
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            // Under the gate: after a stop, the interrupt handler removes
            // it, and the two never remove at once.
            let _ = interrupt::gated(&mut || staging::remove_tree(d));
            interrupt::untrack_temp_file(d);
        }
    }
}
