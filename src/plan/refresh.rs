//! The base images to make current before a build: each base the registry
//! identified is checked on the engine before the first build on it, and
//! pulled when the engine's copy is older than the registry's (the rule is
//! `inputs::bases::stale`; `running::execute` runs the commands).

use crate::inputs::bases::{self, Resolved};
use crate::plan::Plan;
use crate::programs::command::Cmd;
use crate::programs::docker;
use crate::read::compose::BuildSpec;

/// Before the first build on a base the registry identified: make sure the
/// engine's copy is the registry's (`inspect`), else pull it (`pull`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    pub image: String,
    /// The registry's digests, comma-separated, as the tags were made with.
    pub digests: String,
    pub inspect: Cmd,
    pub pull: Cmd,
}

impl Refresh {
    pub fn of(r: &Resolved) -> Option<Refresh> {
        let digests = r.registry.clone()?;
        Some(Refresh {
            inspect: docker::local_lookup(&r.image),
            pull: docker::pull(&r.image),
            image: r.image.clone(),
            digests,
        })
    }

    /// From `inspect`'s output (None: the engine has no copy): is the
    /// engine's copy older than the registry's?
    pub fn stale(&self, inspect_stdout: Option<&str>) -> bool {
        bases::stale(&self.digests, inspect_stdout)
    }
}

/// Give the plan the bases the registry identified, and each build the ones
/// it is built on. A build on a builder that pushes itself gets none: that
/// builder pulls its bases, never the engine.
pub fn attach(
    plan: &mut Plan,
    resolved: &[Resolved],
    bases_of: &dyn Fn(&BuildSpec) -> Vec<String>,
) {
    plan.bases = resolved.iter().filter_map(Refresh::of).collect();
    for b in plan.builds.iter_mut().filter(|b| b.metadata_file.is_none()) {
        let images = bases_of(&b.spec);
        b.bases = plan
            .bases
            .iter()
            .enumerate()
            .filter(|(_, r)| images.contains(&r.image))
            .map(|(k, _)| k)
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_copy_is_stale_unless_it_was_pulled_by_a_registry_digest() {
        let r = Refresh::of(&Resolved {
            image: "reg/base:1".into(),
            identity: "registry sha256:aa,sha256:bb".into(),
            registry: Some("sha256:aa,sha256:bb".into()),
            warning: None,
        })
        .expect("a registry identity");
        assert!(!r.stale(None), "no copy: the build pulls the current one");
        assert!(!r.stale(Some(r#"sha256:1 ["reg/base@sha256:bb"]"#)));
        assert!(r.stale(Some(r#"sha256:1 ["reg/base@sha256:cc"]"#)));
        assert!(r.stale(Some("sha256:1 []")));
        assert_eq!(r.pull.to_string(), "docker pull --quiet reg/base:1");
        let local = Resolved {
            image: "reg/base:1".into(),
            identity: "local sha256:1".into(),
            registry: None,
            warning: None,
        };
        assert_eq!(Refresh::of(&local), None, "only what the registry named");
    }
}
