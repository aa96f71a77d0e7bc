//! Packaging: `scripts/dist.sh` refuses what would build the wrong
//! binaries; the Kubernetes manifests (hostNetwork, and the `dns`
//! alternative) and the Dockerfile say what they must, and the herd.toml each
//! manifest embeds passes `herd check`.

use std::process::Command;

use crate::harness::{read, root, text};

#[test]
fn dist_sh_refuses_what_would_build_the_wrong_binaries() {
    let dist = || {
        let mut c = Command::new("bash");
        c.arg(root().join("scripts/dist.sh")).env_remove("RUSTFLAGS").env_remove("CARGO_ENCODED_RUSTFLAGS");
        c
    };
    let out = dist().arg("mips-unknown-linux-musl").output().expect("run dist.sh");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("dist.sh: no such target: mips-unknown-linux-musl (one of: aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf x86_64-unknown-linux-musl)"), "{}", text(&out.stderr));
    // RUSTFLAGS would silently drop .cargo/config.toml's flags.
    let out = dist().env("RUSTFLAGS", "-C opt-level=1").output().expect("run dist.sh");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr)
            .contains("dist.sh: RUSTFLAGS is set: it would replace .cargo/config.toml's rustflags"),
        "{}",
        text(&out.stderr)
    );
    let help = dist().arg("--help").output().expect("run dist.sh");
    assert!(help.status.success());
    for needle in
        ["herd-<version>-<target triple>", "armv6l", "Pi 1, Zero, Zero W", "RUSTC_BOOTSTRAP=1", "SHA256SUMS"]
    {
        assert!(text(&help.stdout).contains(needle), "--help lacks {needle:?}:\n{}", text(&help.stdout));
    }
}

/// The block scalar under `herd.toml: |` in a manifest, dedented.
fn embedded_config(manifest: &str) -> String {
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "herd.toml: |");
    let key = lines.next().expect("a `herd.toml: |` key");
    let key_indent = key.len() - key.trim_start().len();
    let mut block = Vec::new();
    for line in lines {
        let indent = line.len() - line.trim_start().len();
        if !line.trim().is_empty() && indent <= key_indent {
            break;
        }
        block.push(line);
    }
    let indent = block
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    block.iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n") + "\n"
}

/// `herd check` on a manifest's config, its secret_file pointed at a real file.
fn check_embedded(manifest_name: &str, manifest: &str) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "k8s-test-secret\n").expect("write secret");
    let config = embedded_config(manifest);
    let mounted = r#"secret_file = "/run/secrets/herd/secret""#;
    assert!(config.contains(mounted), "{manifest_name}: the config reads the mounted Secret");
    let config = config.replace(mounted, &format!("secret_file = {:?}", secret.display().to_string()));
    let path = dir.path().join("herd.toml");
    std::fs::write(&path, &config).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_herd"))
        .arg("check")
        .arg("-c")
        .arg(&path)
        .env_remove("HERD_CONFIG")
        .output()
        .expect("run herd check");
    assert!(
        out.status.success(),
        "{manifest_name}: herd check refuses its config:\n{}\n{config}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every YAML document has an apiVersion and a kind; no tab indents.
fn documents(name: &str, manifest: &str) -> Vec<String> {
    assert!(!manifest.contains('\t'), "{name}: tabs in YAML");
    let docs: Vec<String> = manifest.split("\n---\n").map(str::to_owned).collect();
    for doc in &docs {
        assert!(
            doc.lines().any(|l| l.starts_with("apiVersion: ")),
            "{name}: a document without apiVersion:\n{doc}"
        );
        assert!(doc.lines().any(|l| l.starts_with("kind: ")), "{name}: a document without kind:\n{doc}");
    }
    docs
}

fn assert_pod_hardened(name: &str, manifest: &str) {
    for needle in [
        "kind: DaemonSet",
        "kind: ConfigMap",
        "kind: Secret",
        "secretName: herd-secret",
        "name: herd-secret",
        r#"command: ["/herd"]"#,
        r#"args: ["run", "-c", "/etc/herd/herd.toml"]"#,
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        r#"drop: ["ALL"]"#,
        "cpu: 10m",
        "memory: 16Mi",
        "mountPath: /host/sys",
        "path: /sys",
    ] {
        assert!(manifest.contains(needle), "{name} lacks {needle:?}");
    }
    let config = embedded_config(manifest);
    assert!(config.contains(r#"sysfs_root = "/host/sys""#), "{name}: sysfs_root");
    assert!(config.contains(r#"listen = "127.0.0.1:45894""#), "{name}: status on loopback");
}

#[test]
fn k8s_daemonset_uses_the_host_network_and_points_to_the_dns_alternative() {
    let name = "deploy/k8s/daemonset.yaml";
    let manifest = read(name);
    let docs = documents(name, &manifest);
    assert!(
        docs.iter().any(|d| d.contains("kind: DaemonSet") && d.contains("hostNetwork: true")),
        "{name}: hostNetwork"
    );
    assert!(manifest.contains("dnsPolicy: ClusterFirstWithHostNet"));
    assert!(
        manifest.contains("deploy/k8s/dns.yaml") && manifest.contains("headless Service"),
        "{name}: the dns alternative"
    );
    assert_pod_hardened(name, &manifest);
    // herd reads /proc files from sysfs_root's sibling: /host/proc.
    assert!(manifest.contains("mountPath: /host/proc") && manifest.contains("path: /proc"));
    let effective = check_embedded(name, &manifest);
    assert!(effective.contains(r#"strategy = "multicast""#), "{effective}");
}

#[test]
fn k8s_dns_alternative_has_a_headless_service_matching_dns_name() {
    let name = "deploy/k8s/dns.yaml";
    let manifest = read(name);
    let docs = documents(name, &manifest);
    let service = docs.iter().find(|d| d.contains("kind: Service\n")).expect("a Service");
    assert!(service.contains("clusterIP: None"), "{name}: the Service is headless");
    assert!(service.contains("name: herd-dns\n") && service.contains("namespace: herd\n"));
    assert!(
        !manifest.lines().any(|l| l.trim().starts_with("hostNetwork:")),
        "{name}: runs in the pod network"
    );
    assert_pod_hardened(name, &manifest);
    let effective = check_embedded(name, &manifest);
    assert!(effective.contains(r#"strategy = "dns""#), "{effective}");
    assert!(effective.contains(r#"dns_name = "herd-dns.herd.svc.cluster.local""#), "{effective}");
}

#[test]
fn dockerfile_packs_only_the_static_binary() {
    let dockerfile = read("deploy/Dockerfile");
    let instructions: Vec<&str> =
        dockerfile.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for line in [
        "FROM scratch",
        "ARG TARGET=aarch64-unknown-linux-musl",
        "COPY target/${TARGET}/release/herd /herd",
        "USER 65534:65534",
        r#"ENTRYPOINT ["/herd"]"#,
        r#"CMD ["run", "-c", "/etc/herd/herd.toml"]"#,
    ] {
        assert!(instructions.contains(&line), "deploy/Dockerfile lacks {line:?}");
    }
    assert_eq!(instructions.iter().filter(|l| l.starts_with("FROM ")).count(), 1, "one stage, from scratch");
    assert!(dockerfile.contains("docker buildx build --platform linux/arm64 -f deploy/Dockerfile"));
    // The build context is cut to what the COPY lines need.
    let ignore = read("deploy/Dockerfile.dockerignore");
    for pattern in ["*", "!target/*/release/herd", "!config/herd.toml"] {
        assert!(ignore.lines().any(|l| l == pattern), "deploy/Dockerfile.dockerignore lacks {pattern}");
    }
    assert!(root().join("config/herd.toml").is_file());
}
