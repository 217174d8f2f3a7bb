//! Stage 2b: the platforms each build targets (`plan::platforms` has the
//! rules): the rack's asked when they decide, each build's decided and set
//! on its spec before any digest, and, once the builder is known, what it
//! cannot build refused before any build (the classic builder's foreign
//! platforms; the engine's BuildKit builds several one by one, `plan::Split`).

use super::*;

/// The rack's platforms, when they decide a build's (`--rack` or
/// `CONVOX_RACK`, no `--platform`, a built service without `platform:`):
/// asked of `convox` and `aws`, but not in a dry run (which starts no
/// process) nor without `convox` (each says so).
pub(super) fn rack_platforms(
    inv: &Invocation<'_>,
    compose: &Compose,
    target: &Target,
) -> Result<Option<(platforms::Source, Vec<String>)>> {
    let Some(name) = rack(inv.cli) else {
        return Ok(None);
    };
    let flag = inv
        .cli
        .platform
        .as_deref()
        .is_some_and(|p| !p.trim().is_empty());
    let needed = compose.services.iter().any(|s| {
        matches!(&s.source, crate::read::compose::Source::Build { spec, .. } if spec.platform.is_none())
    });
    if flag || !needed {
        return Ok(None);
    }
    if inv.resolved.dry_run {
        eprintln!("note: a dry run does not ask the rack {name} for its platforms (`{}`), so it shows linux/amd64; a run asks", crate::programs::convox::rack_params_cmd(&name));
        return Ok(None);
    }
    if which::which("convox").is_err() {
        eprintln!("note: `convox` is not installed, so the rack {name}'s platforms are not known: building for linux/amd64 (give --platform to choose)");
        return Ok(None);
    }
    let region = target
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"));
    // A convox.yml's app may name its build nodes' architecture: asked
    // beside the rack's parameters, and it wins.
    let app = &inv.resolved.options.app;
    let v3 = compose.format == crate::read::format::Format::ConvoxYml;
    let (nodes, arch) = std::thread::scope(|s| {
        let arch =
            v3.then(|| s.spawn(|| crate::running::release::app_build_arch(app, &name, inv.opts)));
        let nodes = crate::running::release::rack_platforms(&name, region.as_deref(), inv.opts);
        (nodes, arch.map(|h| h.join()))
    });
    match arch {
        Some(Ok(Ok(Some(p)))) => return Ok(Some((platforms::Source::BuildArch, vec![p]))),
        Some(Ok(Err(e))) => eprintln!(
            "note: the app's BuildArch parameter could not be read ({e:#}); the rack's nodes decide"
        ),
        _ => {}
    }
    Ok(Some((platforms::Source::Rack(name), nodes?)))
}

/// The platforms decided: each built service's, and each kept image's
/// (service, image, the platforms it must offer: the flag's, else the
/// rack's, else `linux/amd64`).
pub(super) struct Decisions {
    pub built: Vec<(String, platforms::Decided)>,
    pub kept: Vec<(String, String, platforms::Decided)>,
}

/// Stage 2b: the platforms of each build (`plan::platforms`), set on its
/// spec before any digest, so that the digest and every build command carry
/// them; and those each kept image must offer.
pub(super) fn decide_platforms(
    cli: &Cli,
    compose: &mut Compose,
    rack: Option<&(platforms::Source, Vec<String>)>,
) -> Result<Decisions> {
    let flag = cli
        .platform
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .map(platforms::parse_list)
        .transpose()
        .map_err(|e| anyhow::Error::new(UsageError(format!("--platform: {e}"))))?;
    let file = compose.path.display().to_string();
    let mut out = Vec::new();
    let mut kept = Vec::new();
    let rack = rack.map(|(n, l)| (n, l.as_slice()));
    for svc in &mut compose.services {
        if let crate::read::compose::Source::Image(image) = &svc.source {
            let d =
                platforms::decide(flag.as_deref(), None, rack).map_err(|e| anyhow::anyhow!(e))?;
            kept.push((svc.name.clone(), image.clone(), d));
        }
        if let crate::read::compose::Source::Build { spec, .. } = &mut svc.source {
            let d = platforms::decide(flag.as_deref(), spec.platform.as_deref(), rack).map_err(
                |e| {
                    anyhow::anyhow!(
                        "{file}:{}: service `{}`: `platform:` {e}",
                        svc.pos,
                        svc.name
                    )
                },
            )?;
            spec.platform = Some(d.joined());
            out.push((svc.name.clone(), d));
        }
    }
    Ok(Decisions { built: out, kept })
}

/// Before any build: the classic builder builds only for the engine's own
/// platform (any other is refused, naming what can build it); and a note
/// when Convox's default (linux/amd64) is not the engine's platform.
pub(super) fn check_platforms(plan: &Plan, target: &Target, d: &probe::Detected) -> Result<()> {
    let engine = d.engine_platform.as_deref();
    if let Some(e) = engine.filter(|e| *e != platforms::DEFAULT) {
        if plan
            .platforms
            .iter()
            .any(|(_, p)| p.source == platforms::Source::Default)
        {
            eprintln!(
                "note: building for linux/amd64 (Convox's default; --platform or --rack to choose), not for this engine's own {e}"
            );
        }
    }
    if let Some(bx) = target.buildx.as_ref().filter(|b| b.pushes_itself()) {
        warn_misplaced(plan, bx);
    }
    if target.builder != Builder::Classic {
        return Ok(());
    }
    for (service, p) in &plan.platforms {
        let own = engine.unwrap_or(platforms::DEFAULT);
        if p.list.len() != 1 || p.list[0] != own {
            anyhow::bail!(
                "service `{service}`: the classic builder builds only for the engine's own platform ({own}), and this build is for {} ({}); build it with BuildKit (DOCKER_BUILDKIT=1, with buildx) on a builder for that platform: a buildx builder with a node per platform (docker buildx create --platform …), or the engine's BuildKit with QEMU's binfmt entries",
                p.joined(),
                p.source
            );
        }
    }
    Ok(())
}

/// A fleet whose nodes buildx would give a platform away from the node
/// declared for it (`Buildx::misplaced`): one warning per platform, naming
/// both nodes and the fix.
fn warn_misplaced(plan: &Plan, bx: &crate::programs::buildx::Buildx) {
    let mut said: Vec<&str> = Vec::new();
    for (_, p) in &plan.platforms {
        for platform in &p.list {
            if said.contains(&platform.as_str()) {
                continue;
            }
            if let Some((on, declared)) = bx.misplaced(platform) {
                eprintln!(
                    "warning: builder {}: buildx gives {platform} to node {on}, the first node that lists it, which does not declare it (an emulator there, most likely), not to node {declared}, declared for it; make {declared} the first node (create the builder with it, then --append the others), or remove the emulator from {on}",
                    bx.name
                );
                said.push(platform);
            }
        }
    }
}
