//! The registry checks: how the run asks whether each reference exists
//! already, so that a build whose tags all exist is skipped. ECR itself is
//! asked through its API (`aws ecr batch-get-image`, up to 100 tags a call,
//! before any login); any other registry, or ECR behind `--registry-host`,
//! through `docker manifest inspect`, one reference each. A registry docker
//! reaches over plain HTTP is asked the same question by this program
//! itself first (`running::registry`: no process per tag), and through
//! `docker manifest inspect` whenever it does not answer plainly.

use crate::plan::{tag_of, Build, Check, Target};
use crate::programs::{docker, ecr};

/// One check per reference, or per 100 of them on ECR's API.
/// `ecr_check` is (repository, region) when ECR's API answers.
pub fn checks(
    builds: &[Build],
    ecr_check: Option<&(String, String)>,
    host: &str,
    target: &Target,
) -> Vec<Check> {
    let asks: Vec<(usize, usize)> = builds
        .iter()
        .enumerate()
        .flat_map(|(b, build)| (0..build.refs.len()).map(move |r| (b, r)))
        .collect();
    let tag_at = |&(b, r): &(usize, usize)| tag_of(&builds[b].refs[r]).to_string();
    match ecr_check {
        Some((name, region)) => asks
            .chunks(ecr::BATCH_LIMIT)
            .map(|chunk| {
                let tags: Vec<String> = chunk.iter().map(tag_at).collect();
                let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
                Check {
                    cmd: ecr::batch_get_images(name, &tags, region),
                    asks: chunk.to_vec(),
                    batch: true,
                    plain_http: false,
                }
            })
            .collect(),
        None => asks
            .iter()
            .map(|&(b, r)| Check {
                cmd: docker::manifest_inspect(&builds[b].refs[r], plain_http(host, target)),
                asks: vec![(b, r)],
                batch: false,
                plain_http: plain_http(host, target),
            })
            .collect(),
    }
}

/// The read-back of a build's first reference after its push: `docker
/// manifest inspect --verbose` names the platforms the registry holds
/// (ECR answers it too, once logged in).
pub fn verify(reference: &str, host: &str, target: &Target) -> crate::programs::command::Cmd {
    docker::manifest_inspect(reference, plain_http(host, target))
}

/// The registry is reached over plain HTTP: on loopback, or so configured.
pub(crate) fn plain_http(host: &str, target: &Target) -> bool {
    docker::is_loopback(host) || target.insecure
}
