//! `base build <name>` without `--script`: build ./Dockerfile with a local container engine and turn
//! the image's root filesystem into a `.tar.gz` that is then imported as a base (document 000).
//!
//! The steps, each a plain engine command so it works the same with docker, podman and nerdctl:
//! detect the engine (docker, then podman, then nerdctl), build for `linux/amd64` tagged
//! `<name>:latest` (lowercased; `docker buildx build … --load` on a non-x86_64 host when buildx is
//! there), check with `image inspect` that the image is amd64, then `create` a container (never
//! started), `export` its filesystem through gzip into a temporary file, and remove the container.
//!
//! The server never sees a container engine: the CLI does the build on the user's machine and the
//! server only receives the tarball, exactly like `base import`.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use forkr_engine::{Error, ErrorKind};

use crate::error::{CliError, Result};

/// The only platform a base may have: boxes run on x86_64 hosts.
pub const PLATFORM: &str = "linux/amd64";

/// A container engine the CLI knows how to drive, in detection order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
    Nerdctl,
}

impl EngineKind {
    /// Detection order (document 000): docker, then podman, then nerdctl.
    pub const ALL: [EngineKind; 3] = [EngineKind::Docker, EngineKind::Podman, EngineKind::Nerdctl];

    pub fn program(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::Nerdctl => "nerdctl",
        }
    }
}

/// A detected engine: which one, and the executable found on PATH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEngine {
    pub kind: EngineKind,
    pub path: PathBuf,
}

/// The first of docker, podman, nerdctl found on `path_var` (the PATH value; relative entries are
/// taken from `cwd`). None found is an error naming what to install.
pub fn detect(path_var: Option<&str>, cwd: &Path) -> Result<ContainerEngine> {
    for kind in EngineKind::ALL {
        if let Ok(path) = which::which_in(kind.program(), path_var, cwd) {
            return Ok(ContainerEngine { kind, path });
        }
    }
    Err(CliError::from(Error::new(
        ErrorKind::BadRequest,
        "no_container_engine",
        "building a base from a Dockerfile needs a container engine, and none of docker, podman or nerdctl is on PATH",
    ))
    .with_help(
        "install Docker (with buildx on non-x86_64 machines), Podman or nerdctl, or build the base from a shell \
         script instead: 4kr base build <name> --script FILE",
    ))
}

/// `<name>:latest`, lowercased: image references must be lowercase, base names need not be.
pub fn image_tag(name: &str) -> String {
    format!("{}:latest", name.to_lowercase())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// Whether the build goes through `docker buildx`: only Docker on a non-x86_64 host needs it to
/// cross-build for linux/amd64, and only when buildx is installed.
pub fn uses_buildx(kind: EngineKind, host_arch: &str, has_buildx: bool) -> bool {
    kind == EngineKind::Docker && host_arch != "x86_64" && has_buildx
}

/// The build command's arguments (after the program), run in the Dockerfile's directory.
pub fn build_args(tag: &str, buildx: bool) -> Vec<String> {
    if buildx {
        strings(&["buildx", "build", "--platform", PLATFORM, "-t", tag, "--load", "."])
    } else {
        strings(&["build", "--platform", PLATFORM, "-t", tag, "."])
    }
}

/// Prints the image's architecture (`amd64`, `arm64`, …).
pub fn inspect_args(tag: &str) -> Vec<String> {
    strings(&["image", "inspect", "--format", "{{.Architecture}}", tag])
}

/// Creates (does not start) a container to export. The `true` command satisfies engines that refuse
/// to create a container from an image without CMD or ENTRYPOINT (a `FROM scratch` image).
pub fn create_args(tag: &str) -> Vec<String> {
    strings(&["create", tag, "true"])
}

pub fn export_args(container: &str) -> Vec<String> {
    strings(&["export", container])
}

pub fn rm_args(container: &str) -> Vec<String> {
    strings(&["rm", "-f", container])
}

/// Fails unless the engine reported `amd64` for the image.
pub fn check_arch(tag: &str, reported: &str) -> Result<()> {
    let arch = reported.trim();
    if arch == "amd64" {
        return Ok(());
    }
    Err(CliError::from(Error::bad_request(
        "arch_mismatch",
        format!("image {tag} is built for {arch:?}, but a base must be {PLATFORM} (amd64)"),
    ))
    .with_help("build the image for linux/amd64; on a non-x86_64 machine with Docker, install docker buildx"))
}

/// `base build <name>` without `--script` builds `./Dockerfile`; without one the user most likely
/// meant `--script`, so say so before looking for an engine.
pub fn require_dockerfile(dir: &Path) -> Result<()> {
    if dir.join("Dockerfile").is_file() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "there is no Dockerfile in {}; `4kr base build <name>` builds ./Dockerfile",
        dir.display()
    ))
    .with_help("run it in the directory holding the Dockerfile, or build from a script with --script FILE"))
}

/// Runs engine commands in the Dockerfile's directory.
pub struct Builder<'a> {
    pub engine: &'a ContainerEngine,
    pub dir: &'a Path,
}

impl Builder<'_> {
    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.engine.path);
        c.args(args).current_dir(self.dir).stdin(Stdio::null());
        c
    }

    fn shown(&self, args: &[String]) -> String {
        format!("{} {}", self.engine.kind.program(), args.join(" "))
    }

    fn start_error(&self, args: &[String], e: std::io::Error) -> CliError {
        CliError::io(format!("cannot run `{}`", self.shown(args)), e)
    }

    fn failed(&self, args: &[String], status: std::process::ExitStatus, stderr: &str) -> CliError {
        let detail = stderr.trim();
        let mut message = format!("`{}` failed ({status})", self.shown(args));
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        CliError::from(Error::bad_request("container_engine_failed", message))
    }

    /// Runs a step whose output the user should see (the build log), on stderr so that `--json`
    /// output on stdout stays clean.
    fn run_shown(&self, args: &[String]) -> Result<()> {
        let status = self
            .command(args)
            .stdout(std::io::stderr())
            .stderr(std::io::stderr())
            .status()
            .map_err(|e| self.start_error(args, e))?;
        if !status.success() {
            return Err(self.failed(args, status, "see the output above"));
        }
        Ok(())
    }

    /// Runs a step and returns its standard output.
    fn run_captured(&self, args: &[String]) -> Result<String> {
        let out = self.command(args).output().map_err(|e| self.start_error(args, e))?;
        if !out.status.success() {
            return Err(self.failed(args, out.status, &String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn has_buildx(&self) -> bool {
        self.command(&["buildx", "version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Builds `./Dockerfile` as `<name>:latest` and writes the image's root filesystem, gzipped, to
    /// `out`. The exported container is removed again whatever happens.
    pub fn build_rootfs(&self, name: &str, host_arch: &str, out: &Path) -> Result<String> {
        require_dockerfile(self.dir)?;
        let tag = image_tag(name);
        let kind = self.engine.kind;
        let buildx_needed = kind == EngineKind::Docker && host_arch != "x86_64";
        let buildx = buildx_needed && self.has_buildx();
        if buildx_needed && !buildx {
            eprintln!(
                "warning: this host is {host_arch}; docker buildx is required to cross-build for {PLATFORM}, \
                 trying a plain `docker build --platform {PLATFORM}`"
            );
        }
        eprintln!("building {tag} from ./Dockerfile with {}", kind.program());
        self.run_shown(&build_args(&tag, uses_buildx(kind, host_arch, buildx)))?;
        check_arch(&tag, &self.run_captured(&inspect_args(&tag))?)?;
        let id = self.run_captured(&create_args(&tag))?.trim().to_owned();
        if id.is_empty() {
            return Err(CliError::from(Error::internal(format!(
                "`{}` printed no container id",
                self.shown(&create_args(&tag))
            ))));
        }
        let _container = RemoveContainer { builder: self, id: id.clone() };
        eprintln!("exporting the image's root filesystem");
        self.export(&id, out)?;
        Ok(tag)
    }

    /// `export <id>` piped through gzip into `out`.
    fn export(&self, id: &str, out: &Path) -> Result<()> {
        let args = export_args(id);
        let mut child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.start_error(&args, e))?;
        let written = (|| {
            let file = std::fs::File::create(out)
                .map_err(|e| CliError::io(format!("cannot write {}", out.display()), e))?;
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
            if let Some(mut stdout) = child.stdout.take() {
                std::io::copy(&mut stdout, &mut gz)
                    .map_err(|e| CliError::io(format!("cannot write {}", out.display()), e))?;
            }
            let mut file =
                gz.finish().map_err(|e| CliError::io(format!("cannot write {}", out.display()), e))?;
            file.flush().map_err(|e| CliError::io(format!("cannot write {}", out.display()), e))
        })();
        // Always reap the child, also when writing failed (it then dies of SIGPIPE).
        let output = child.wait_with_output().map_err(|e| self.start_error(&args, e))?;
        written?;
        if !output.status.success() {
            return Err(self.failed(&args, output.status, &String::from_utf8_lossy(&output.stderr)));
        }
        Ok(())
    }
}

/// Removes the exported container when dropped, so no step's failure leaves it behind.
struct RemoveContainer<'a, 'b> {
    builder: &'a Builder<'b>,
    id: String,
}

impl Drop for RemoveContainer<'_, '_> {
    fn drop(&mut self) {
        let _ = self.builder.command(&rm_args(&self.id)).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn executable(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn path_of(dirs: &[&Path]) -> String {
        dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
    }

    #[test]
    fn detection_order_is_docker_podman_nerdctl() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let cwd = a.path();
        executable(a.path(), "nerdctl", "");
        executable(b.path(), "podman", "");
        let path = path_of(&[a.path(), b.path()]);
        // podman beats nerdctl even though nerdctl comes first on PATH.
        let e = detect(Some(&path), cwd).unwrap();
        assert_eq!((e.kind, e.path), (EngineKind::Podman, b.path().join("podman")));
        executable(b.path(), "docker", "");
        assert_eq!(detect(Some(&path), cwd).unwrap().kind, EngineKind::Docker);
        std::fs::remove_file(b.path().join("docker")).unwrap();
        std::fs::remove_file(b.path().join("podman")).unwrap();
        assert_eq!(detect(Some(&path), cwd).unwrap().kind, EngineKind::Nerdctl);
    }

    #[test]
    fn no_engine_names_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        // A file named docker that is not executable does not count.
        std::fs::write(empty.path().join("docker"), "").unwrap();
        for path in [Some(empty.path().to_str().unwrap()), None] {
            let e = detect(path, empty.path()).unwrap_err();
            assert_eq!(e.code(), "no_container_engine");
            assert!(e.message().contains("none of docker, podman or nerdctl is on PATH"), "{}", e.message());
            let help = e.help.unwrap_or_default();
            assert!(help.contains("install Docker") && help.contains("Podman") && help.contains("nerdctl"));
            assert!(help.contains("--script FILE"), "{help}");
        }
    }

    #[test]
    fn tags_are_lowercased() {
        assert_eq!(image_tag("Dev-Base"), "dev-base:latest");
        assert_eq!(image_tag("my_base.2"), "my_base.2:latest");
    }

    #[test]
    fn build_commands_per_engine_and_host() {
        let plain = ["build", "--platform", "linux/amd64", "-t", "dev:latest", "."];
        let buildx = ["buildx", "build", "--platform", "linux/amd64", "-t", "dev:latest", "--load", "."];
        let cases = [
            (EngineKind::Docker, "x86_64", true, &plain[..]),
            (EngineKind::Docker, "aarch64", true, &buildx[..]),
            (EngineKind::Docker, "aarch64", false, &plain[..]),
            (EngineKind::Podman, "aarch64", true, &plain[..]),
            (EngineKind::Nerdctl, "aarch64", true, &plain[..]),
        ];
        for (kind, arch, has_buildx, expect) in cases {
            let args = build_args("dev:latest", uses_buildx(kind, arch, has_buildx));
            assert_eq!(args, strings(expect), "{kind:?} on {arch}, buildx {has_buildx}");
        }
        assert_eq!(
            inspect_args("t:latest"),
            ["image", "inspect", "--format", "{{.Architecture}}", "t:latest"]
        );
        assert_eq!(create_args("t:latest"), ["create", "t:latest", "true"]);
        assert_eq!(export_args("c1"), ["export", "c1"]);
        assert_eq!(rm_args("c1"), ["rm", "-f", "c1"]);
    }

    #[test]
    fn only_amd64_images_pass() {
        assert!(check_arch("t:latest", "amd64\n").is_ok());
        let e = check_arch("t:latest", "arm64\n").unwrap_err();
        assert_eq!(e.code(), "arch_mismatch");
        assert_eq!(
            e.message(),
            "image t:latest is built for \"arm64\", but a base must be linux/amd64 (amd64)"
        );
    }

    /// A stand-in engine script: docker cannot run on this machine, so this drives the real command
    /// sequence, the gzip pipe and the container cleanup against a shell script that logs its argv,
    /// answers `image inspect` with `$ARCH` and exports a real directory as a tar stream.
    fn fake_engine(dir: &Path, arch: &str, buildx: bool) -> ContainerEngine {
        let log = dir.join("calls.log");
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/os-release"), "ID=fake\n").unwrap();
        let script = format!(
            r#"echo "$*" >> {log}
case "$1" in
  buildx) [ {buildx} = true ] || exit 1 ;;
  build) echo "step 1/1 : FROM scratch" ;;
  image) echo {arch} ;;
  create) echo c0ffee ;;
  export) tar -C {rootfs} -cf - . ;;
  rm) ;;
  *) exit 2 ;;
esac"#,
            log = log.display(),
            rootfs = rootfs.display(),
        );
        executable(dir, "docker", &script);
        ContainerEngine { kind: EngineKind::Docker, path: dir.join("docker") }
    }

    fn calls(dir: &Path) -> Vec<String> {
        std::fs::read_to_string(dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn export_pipeline_builds_checks_exports_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let engine = fake_engine(dir.path(), "amd64", true);
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.path().join("rootfs.tar.gz");
        let b = Builder { engine: &engine, dir: &work };

        // No Dockerfile: nothing runs.
        let e = b.build_rootfs("Dev", "aarch64", &out).unwrap_err();
        assert!(e.message().starts_with("there is no Dockerfile in "), "{}", e.message());
        assert!(calls(dir.path()).is_empty());

        std::fs::write(work.join("Dockerfile"), "FROM scratch\n").unwrap();
        assert_eq!(b.build_rootfs("Dev", "aarch64", &out).unwrap(), "dev:latest");
        assert_eq!(
            calls(dir.path()),
            [
                "buildx version",
                "buildx build --platform linux/amd64 -t dev:latest --load .",
                "image inspect --format {{.Architecture}} dev:latest",
                "create dev:latest true",
                "export c0ffee",
                "rm -f c0ffee",
            ]
        );
        let listing = Command::new("tar").arg("-tzf").arg(&out).output().unwrap();
        assert!(listing.status.success());
        assert!(String::from_utf8_lossy(&listing.stdout).contains("./etc/os-release"));
    }

    #[test]
    fn an_arm64_image_is_refused_before_anything_is_exported() {
        let dir = tempfile::tempdir().unwrap();
        let engine = fake_engine(dir.path(), "arm64", false);
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let out = dir.path().join("rootfs.tar.gz");
        let b = Builder { engine: &engine, dir: dir.path() };
        let e = b.build_rootfs("dev", "x86_64", &out).unwrap_err();
        assert_eq!(e.code(), "arch_mismatch");
        assert_eq!(
            calls(dir.path()),
            [
                "build --platform linux/amd64 -t dev:latest .",
                "image inspect --format {{.Architecture}} dev:latest"
            ]
        );
        assert!(!out.exists());
    }

    #[test]
    fn a_failed_step_says_which_command_failed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        executable(dir.path(), "podman", "echo 'no such image' >&2; exit 3");
        let engine = ContainerEngine { kind: EngineKind::Podman, path: dir.path().join("podman") };
        let b = Builder { engine: &engine, dir: dir.path() };
        let e = b.build_rootfs("dev", "x86_64", &dir.path().join("x.tar.gz")).unwrap_err();
        assert_eq!(e.code(), "container_engine_failed");
        assert!(
            e.message()
                .starts_with("`podman build --platform linux/amd64 -t dev:latest .` failed (exit status: 3)"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn a_failed_export_still_removes_the_container() {
        let dir = tempfile::tempdir().unwrap();
        let engine = fake_engine(dir.path(), "amd64", false);
        // Without the directory it exports, the stand-in's `export` fails like a broken engine would.
        std::fs::remove_dir_all(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let b = Builder { engine: &engine, dir: dir.path() };
        let e = b.build_rootfs("dev", "x86_64", &dir.path().join("x.tar.gz")).unwrap_err();
        assert_eq!(e.code(), "container_engine_failed");
        assert!(e.message().starts_with("`docker export c0ffee` failed"), "{}", e.message());
        assert_eq!(calls(dir.path()).last().map(String::as_str), Some("rm -f c0ffee"));
    }
}
