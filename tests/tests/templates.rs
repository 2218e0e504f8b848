//! Static checks on the deployable templates (templates-cfn/, templates-arm/): the contract
//! parameters and outputs, network exposure, cost and tagging rules, that the embedded boot
//! scripts equal their source files with the shared library inlined, that the sources share
//! no block of lines outside that library, and that the server boot script builds a valid
//! Velociraptor merge document.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

const TAG_KEYS: [&str; 3] = [
    "cloudtest:run-id",
    "cloudtest:expires-at",
    "cloudtest:requirement",
];
const OUTPUTS: [&str; 7] = [
    "ServerAddress",
    "FrontendUrl",
    "GuiUrl",
    "CaCertificate",
    "ExpectedClients",
    "VelociraptorVersion",
    "PinnedServerName",
];
const CFN_PARAMETERS: [&str; 14] = [
    "RunId",
    "ExpiresAt",
    "Requirement",
    "VelociraptorVersion",
    "VelociraptorSha256",
    "AdminUser",
    "AdminPassword",
    "AllowedCidr",
    "ServerInstanceType",
    "ClientInstanceType",
    "UseSpot",
    "FrontendPort",
    "GuiPort",
    "ImageId",
];
/// CloudFormation types in the template that accept tags (others, such as routes or
/// wait-condition handles, cannot carry any).
const CFN_TAGGABLE: [&str; 10] = [
    "AWS::EC2::VPC",
    "AWS::EC2::InternetGateway",
    "AWS::EC2::RouteTable",
    "AWS::EC2::Subnet",
    "AWS::EC2::SecurityGroup",
    "AWS::SecretsManager::Secret",
    "AWS::IAM::Role",
    "AWS::EC2::LaunchTemplate",
    "AWS::EC2::EIP",
    "AWS::EC2::Instance",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn cfn() -> Yaml {
    serde_norway::from_str(&read("templates-cfn/velociraptor.yaml")).expect("CFN template is YAML")
}

fn arm() -> Json {
    serde_json::from_str(&read("templates-arm/velociraptor.json")).expect("ARM template is JSON")
}

/// Strips a short-form intrinsic tag (`!Ref`, `!Sub`, ...), keeping its value.
fn untag(v: &Yaml) -> &Yaml {
    match v {
        Yaml::Tagged(t) => &t.value,
        other => other,
    }
}

fn tag_name(v: &Yaml) -> Option<String> {
    match v {
        Yaml::Tagged(t) => Some(t.tag.to_string().trim_start_matches('!').to_string()),
        _ => None,
    }
}

fn get<'a>(v: &'a Yaml, key: &str) -> &'a Yaml {
    untag(v)
        .get(key)
        .unwrap_or_else(|| panic!("missing key {key} in {v:?}"))
}

fn resources(t: &Yaml) -> Vec<(String, &Yaml)> {
    get(t, "Resources")
        .as_mapping()
        .expect("Resources is a mapping")
        .iter()
        .map(|(k, v)| (k.as_str().expect("resource name").to_string(), v))
        .collect()
}

fn of_type<'a>(t: &'a Yaml, ty: &str) -> Vec<(String, &'a Yaml)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| get(r, "Type").as_str() == Some(ty))
        .collect()
}

/// Every string in a YAML tree, tags unwrapped.
fn yaml_strings(v: &Yaml, out: &mut Vec<String>) {
    match untag(v) {
        Yaml::String(s) => out.push(s.clone()),
        Yaml::Sequence(seq) => seq.iter().for_each(|x| yaml_strings(x, out)),
        Yaml::Mapping(m) => m.iter().for_each(|(k, x)| {
            yaml_strings(k, out);
            yaml_strings(x, out);
        }),
        _ => {}
    }
}

fn cfn_tag_keys(tags: &Yaml) -> Vec<String> {
    tags.as_sequence()
        .expect("Tags is a list")
        .iter()
        .filter_map(|t| t.get("Key").and_then(Yaml::as_str).map(str::to_string))
        .collect()
}

fn assert_has_run_tags(what: &str, keys: &[String]) {
    for want in TAG_KEYS {
        assert!(
            keys.iter().any(|k| k == want),
            "{what} lacks tag {want}: {keys:?}"
        );
    }
}

#[test]
fn cfn_declares_contract_parameters_and_outputs() {
    let t = cfn();
    let params = get(&t, "Parameters");
    for p in CFN_PARAMETERS {
        assert!(params.get(p).is_some(), "parameter {p} missing");
    }
    assert!(
        get(params, "AllowedCidr").get("Default").is_none(),
        "AllowedCidr must have no default"
    );
    let version = get(get(params, "VelociraptorVersion"), "Default")
        .as_str()
        .expect("version default");
    assert_exact_version(version);
    let sha = get(params, "VelociraptorSha256");
    assert_eq!(get(sha, "AllowedPattern").as_str(), Some("^[a-f0-9]{64}$"));
    assert_eq!(
        get(get(params, "AdminPassword"), "NoEcho").as_bool(),
        Some(true)
    );
    assert!(get(get(params, "AdminPassword"), "MinLength").as_u64() >= Some(24));
    assert!(get(get(params, "ImageId"), "Default")
        .as_str()
        .is_some_and(|d| d.starts_with("/aws/service/")));
    let outputs = get(&t, "Outputs");
    for o in OUTPUTS {
        assert!(outputs.get(o).is_some(), "output {o} missing");
    }
    let mut ca = Vec::new();
    yaml_strings(get(get(outputs, "CaCertificate"), "Value"), &mut ca);
    assert!(
        ca.iter().any(|s| s == "ServerReady.Data"),
        "CaCertificate must be ServerReady.Data: {ca:?}"
    );
    let wait = &of_type(&t, "AWS::CloudFormation::WaitCondition");
    assert!(wait.iter().any(
        |(n, w)| n == "ServerReady" && get(get(w, "Properties"), "Timeout").as_str().is_some()
    ));
}

fn assert_exact_version(version: &str) {
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())),
        "version default {version:?} is not an exact release"
    );
}

#[test]
fn cfn_exposes_only_allowed_cidr_and_never_the_world() {
    let t = cfn();
    let mut gui_sources = Vec::new();
    for (name, sg) in of_type(&t, "AWS::EC2::SecurityGroup") {
        let props = get(sg, "Properties");
        let Some(ingress) = untag(props).get("SecurityGroupIngress") else {
            continue;
        };
        for rule in ingress.as_sequence().expect("ingress list") {
            let cidr_raw = rule.get("CidrIp");
            let cidr = cidr_raw.map(untag);
            assert_ne!(
                cidr.and_then(Yaml::as_str),
                Some("0.0.0.0/0"),
                "{name} opens to the world"
            );
            assert!(rule.get("CidrIpv6").is_none(), "{name} has IPv6 ingress");
            let from = rule
                .get("FromPort")
                .map(|v| (tag_name(v), untag(v).as_str().map(str::to_string)));
            for port in [22, 3389] {
                assert_ne!(
                    rule.get("FromPort").and_then(Yaml::as_u64),
                    Some(port),
                    "{name} opens {port}"
                );
            }
            if from == Some((Some("Ref".into()), Some("GuiPort".into()))) {
                gui_sources.push((
                    tag_name(cidr_raw.expect("cidr")),
                    cidr.and_then(Yaml::as_str).map(str::to_string),
                ));
            }
        }
    }
    assert_eq!(
        gui_sources,
        vec![(Some("Ref".to_string()), Some("AllowedCidr".to_string()))],
        "the GUI port must be open to AllowedCidr only"
    );
}

#[test]
fn cfn_instances_are_hardened_cheap_and_tagged() {
    let t = cfn();
    let templates = of_type(&t, "AWS::EC2::LaunchTemplate");
    assert_eq!(templates.len(), 2, "one launch template per instance");
    for (name, lt) in &templates {
        let data = get(get(lt, "Properties"), "LaunchTemplateData");
        assert_eq!(
            get(get(data, "MetadataOptions"), "HttpTokens").as_str(),
            Some("required"),
            "{name}: IMDSv2"
        );
        for bdm in get(data, "BlockDeviceMappings")
            .as_sequence()
            .expect("bdm list")
        {
            assert_eq!(
                get(get(bdm, "Ebs"), "Encrypted").as_bool(),
                Some(true),
                "{name}: encrypted disk"
            );
        }
        let market = get(data, "InstanceMarketOptions");
        assert_eq!(
            tag_name(market).as_deref(),
            Some("If"),
            "{name}: spot is conditional on UseSpot"
        );
        let mut s = Vec::new();
        yaml_strings(market, &mut s);
        assert!(s.iter().any(|x| x == "spot"), "{name}: spot market options");
        let specs = get(data, "TagSpecifications")
            .as_sequence()
            .expect("tag specs");
        for kind in ["instance", "volume", "network-interface"] {
            let spec = specs
                .iter()
                .find(|s| s.get("ResourceType").and_then(Yaml::as_str) == Some(kind))
                .unwrap_or_else(|| panic!("{name}: no {kind} tag specification"));
            assert_has_run_tags(&format!("{name} {kind}"), &cfn_tag_keys(get(spec, "Tags")));
        }
    }
    for ty in CFN_TAGGABLE {
        for (name, r) in of_type(&t, ty) {
            let props = get(r, "Properties");
            let keys = if ty == "AWS::EC2::LaunchTemplate" {
                cfn_tag_keys(get(&get(props, "TagSpecifications")[0], "Tags"))
            } else {
                cfn_tag_keys(get(props, "Tags"))
            };
            assert_has_run_tags(&name, &keys);
        }
    }
    for (name, _) in resources(&t) {
        let ty = get(&get(&t, "Resources")[name.as_str()], "Type")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let untaggable = [
            "AWS::EC2::VPCGatewayAttachment",
            "AWS::EC2::Route",
            "AWS::EC2::SubnetRouteTableAssociation",
            "AWS::IAM::InstanceProfile",
            "AWS::EC2::EIPAssociation",
            "AWS::CloudFormation::WaitConditionHandle",
            "AWS::CloudFormation::WaitCondition",
        ];
        assert!(
            CFN_TAGGABLE.contains(&ty.as_str()) || untaggable.contains(&ty.as_str()),
            "{name}: type {ty} is neither checked for tags nor known to be untaggable"
        );
    }
}

/// The embedded script of `resource`'s UserData: (header template, body).
fn cfn_user_data(t: &Yaml, resource: &str) -> (String, String) {
    let r = &get(t, "Resources")[resource];
    let join = get(
        get(get(get(r, "Properties"), "UserData"), "Fn::Base64"),
        "Fn::Join",
    );
    let parts = join[1].as_sequence().expect("join parts");
    let sub = untag(&parts[0]);
    let header = match sub {
        Yaml::Sequence(s) => s[0].as_str(),
        other => other.as_str(),
    }
    .expect("header string")
    .to_string();
    (header, parts[1].as_str().expect("body string").to_string())
}

/// CreateStack takes at most 51,200 bytes of template body inline (the provider refuses a
/// larger one before calling AWS). The template carries the boot library twice.
#[test]
fn the_cfn_template_fits_in_create_stack_inline() {
    let len = read("templates-cfn/velociraptor.yaml").len();
    assert!(
        len <= 51_200,
        "templates-cfn/velociraptor.yaml is {len} bytes; CloudFormation accepts at most 51,200 inline"
    );
}

/// The four boot script sources, each with the library it includes.
const BOOT_SCRIPTS: [&str; 4] = [
    "templates-cfn/scripts/server-boot.sh",
    "templates-cfn/scripts/client-boot.sh",
    "templates-arm/scripts/server-boot.sh",
    "templates-arm/scripts/client-boot.sh",
];
/// The library the boot scripts include (issue 14 §6).
const BOOT_LIB: &str = "templates-common/boot-lib.sh";
/// First line of the library, dropped when it is inlined.
const LIB_DIRECTIVE: &str = "# shellcheck shell=bash\n";
/// Shortest run of lines two boot scripts may not share (issue 14 §6).
const SHARED_RUN: usize = 6;

/// The include stanza for `lib` (a path relative to the script's directory).
fn include_stanza(lib: &str) -> [String; 3] {
    [
        format!("# include: {lib}"),
        format!("# shellcheck source=SCRIPTDIR/{lib}"),
        format!("source \"$(dirname \"${{BASH_SOURCE[0]}}\")/{lib}\""),
    ]
}

/// The boot script `rel` as a template carries it: each include stanza replaced by the
/// library between two marker comments. Restates the rule of ci/render-templates.py, so a
/// change to either the rule or the files shows up here.
fn rendered_script(rel: &str) -> String {
    let dir = repo()
        .join(rel)
        .parent()
        .expect("a script lives in a directory")
        .to_path_buf();
    let source = read(rel);
    let lines: Vec<&str> = source.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lib) = lines[i].strip_prefix("# include: ") else {
            out.push(lines[i].to_string());
            i += 1;
            continue;
        };
        let stanza = include_stanza(lib);
        assert_eq!(
            lines.get(i..i + 3),
            Some(&stanza.each_ref().map(String::as_str)[..]),
            "{rel}:{}: malformed include stanza",
            i + 1
        );
        let text = std::fs::read_to_string(dir.join(lib))
            .unwrap_or_else(|e| panic!("{rel}: read {lib}: {e}"));
        let body = text
            .strip_prefix(LIB_DIRECTIVE)
            .unwrap_or_else(|| panic!("{lib} must start with {LIB_DIRECTIVE:?}"));
        out.push(format!(
            "# >>> {lib} (inlined by ci/render-templates.py, comments dropped)"
        ));
        out.extend(
            body.trim_end_matches('\n')
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .map(str::to_string),
        );
        out.push(format!("# <<< {lib}"));
        i += 3;
    }
    out.join("\n") + "\n"
}

/// Every rendered boot script: (source path, text the template carries).
fn embedded_scripts() -> Vec<(&'static str, String)> {
    let t = cfn();
    let a = arm();
    let embedded = |rel: &'static str| -> String {
        let file = rel.rsplit('/').next().unwrap_or(rel);
        let server = file.starts_with("server");
        if rel.starts_with("templates-cfn/") {
            let resource = if server {
                "ServerInstance"
            } else {
                "ClientInstance"
            };
            cfn_user_data(&t, resource).1
        } else {
            let var = if server {
                "serverScript"
            } else {
                "clientScript"
            };
            a["variables"][var]
                .as_str()
                .unwrap_or_else(|| panic!("ARM variable {var} is not a string"))
                .to_string()
        }
    };
    BOOT_SCRIPTS
        .iter()
        .map(|&rel| (rel, embedded(rel)))
        .collect()
}

#[test]
fn embedded_scripts_equal_their_source_files() {
    let lib_body = read(BOOT_LIB);
    // The library's code as the templates carry it: its comment lines are dropped.
    let lib_body: String = lib_body
        .strip_prefix(LIB_DIRECTIVE)
        .expect("library directive")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for (rel, embedded) in embedded_scripts() {
        assert_eq!(
            embedded,
            rendered_script(rel),
            "{rel} drifted from its template: run ci/render-templates.py"
        );
        // One self-contained script: the library inlined once, nothing sourced at boot.
        assert_eq!(
            embedded.matches(lib_body.trim_end()).count(),
            1,
            "{rel}: the template must carry {BOOT_LIB} exactly once"
        );
        for line in embedded.lines() {
            let code = line.trim_start();
            assert!(
                !code.starts_with("source ")
                    && !code.starts_with(". ")
                    && !code.starts_with("# include:"),
                "{rel}: the rendered script still includes a file: {line}"
            );
        }
    }
}

/// The first run of `SHARED_RUN` lines (trimmed, blank lines skipped) that `a` and `b`
/// share, if any.
fn shared_run(a: &str, b: &str) -> Option<Vec<String>> {
    let significant = |text: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (significant(a), significant(b));
    let in_b: HashSet<&[String]> = b.windows(SHARED_RUN).collect();
    a.windows(SHARED_RUN)
        .find(|w| in_b.contains(w))
        .map(<[String]>::to_vec)
}

#[test]
fn shared_run_finds_a_block_whatever_its_indentation() {
    let block = "a()\n{\n  x=1\n\n  y=2\n  z=3\n}\n";
    let indented: String = block.lines().map(|l| format!("    {l}\n")).collect();
    let a = format!("one\n{block}two\n");
    let b = format!("three\n{indented}four\n");
    assert_eq!(
        shared_run(&a, &b).map(|run| run.len()),
        Some(SHARED_RUN),
        "a six-line block (blank line skipped) must be found"
    );
    let short = "a()\n{\n  x=1\n  y=2\n}\n";
    assert_eq!(
        shared_run(&format!("{short}p\n"), &format!("{short}q\n")),
        None
    );
}

/// Issue 14 §6: what two boot scripts have in common lives in templates-common/boot-lib.sh,
/// so no run of six lines (after trimming) appears in two of the sources.
#[test]
fn boot_scripts_share_no_block_outside_the_library() {
    let sources: Vec<(&str, String)> = BOOT_SCRIPTS.iter().map(|&s| (s, read(s))).collect();
    let mut shared = Vec::new();
    for (i, (a, text_a)) in sources.iter().enumerate() {
        for (b, text_b) in &sources[i + 1..] {
            if let Some(run) = shared_run(text_a, text_b) {
                shared.push(format!("{a} and {b}:\n  {}", run.join("\n  ")));
            }
        }
    }
    assert!(
        shared.is_empty(),
        "boot scripts share runs of {SHARED_RUN} lines; move them to {BOOT_LIB}:\n{}",
        shared.join("\n")
    );
}

/// EC2 refuses user data above 16 KB (before base64); the library inlined in each script
/// must leave room for the header.
#[test]
fn cfn_user_data_fits_the_ec2_limit() {
    let t = cfn();
    for resource in ["ServerInstance", "ClientInstance"] {
        let (header, body) = cfn_user_data(&t, resource);
        let size = header.len() + body.len();
        assert!(
            size < 15 * 1024,
            "{resource}: user data is {size} bytes, close to EC2's 16 KB limit"
        );
    }
}

/// Issue 15 §7 and §3/§4: every `curl` in the boot scripts is bounded (a stalled call
/// cannot hang the health wait), every AWS log line also reaches the serial console, and
/// the AWS server prints its CA fingerprint there for the provider to compare.
#[test]
fn boot_scripts_bound_curl_and_aws_ones_write_to_the_console() {
    for (script, text) in embedded_scripts() {
        let mut calls = 0;
        for (n, line) in text.lines().enumerate() {
            let code = line.split('#').next().unwrap_or("");
            if code.contains("curl ") {
                calls += 1;
                assert!(
                    code.contains("--max-time"),
                    "{script} (rendered):{}: curl without --max-time: {line}",
                    n + 1
                );
            }
        }
        assert!(calls > 0, "{script} has no curl call");
        let log = text
            .split("log() {")
            .nth(1)
            .and_then(|rest| rest.split("\n}").next())
            .unwrap_or_else(|| panic!("{script} has no log()"));
        assert!(
            log.contains(">&2") && log.contains("CT_LOG_TO_STDERR"),
            "{script}: log() must write to stderr when CT_LOG_TO_STDERR is 1"
        );
        let console = if script.starts_with("templates-cfn/") {
            1
        } else {
            0
        };
        assert!(
            text.contains(&format!("\nreadonly CT_LOG_TO_STDERR={console} #")),
            "{script}: CT_LOG_TO_STDERR must be {console}"
        );
    }
    let server = rendered_script("templates-cfn/scripts/server-boot.sh");
    assert!(
        server.contains("cloudtest-ca-sha256=") && server.contains("-outform DER | sha256sum"),
        "the server must print its CA's SHA-256 to the console"
    );
}

/// Runs `command` in bash after sourcing `script` (rendered) behind `header`, with the log
/// file moved to a temporary directory: (status ok, stdout, stderr, log file).
fn run_sourced(header: &str, script: &str, command: &str) -> (bool, String, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("boot.log");
    let production_log = "readonly CT_LOG=/var/log/cloudtest-boot.log\n";
    assert!(
        script.contains(production_log),
        "the script names no log file"
    );
    let script = script.replace(
        production_log,
        &format!("readonly CT_LOG='{}'\n", log.display()),
    );
    let path = dir.path().join("rendered.sh");
    std::fs::write(&path, format!("{header}{script}")).expect("write rendered script");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source \"$1\" && {command}"))
        .arg("bash")
        .arg(&path)
        .output()
        .expect("run bash");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

/// A rejected value is logged on both clouds; on AWS the log line goes to the console, on
/// Azure the extension status (stdout and stderr) gets a note that names no value.
#[test]
fn rejected_values_stay_out_of_the_azure_extension_status() {
    let secret = "not-a-nonce!";
    let command = format!("require_match nonce '{secret}' '^[A-Za-z0-9-]{{16,64}}$'");
    for (rel, text) in embedded_scripts() {
        let (ok, stdout, stderr, log) = run_sourced("", &text, &command);
        assert!(!ok, "{rel}: require_match accepted {secret}");
        assert!(
            log.contains(&format!("cloudtest-boot: invalid nonce: '{secret}'")),
            "{rel}: {log}"
        );
        assert_eq!(stdout, "", "{rel}: stdout");
        if rel.starts_with("templates-arm/") {
            assert_eq!(stderr, "cloudtest: invalid nonce\n", "{rel}");
        } else {
            assert!(
                stderr.contains(&format!("cloudtest-boot: invalid nonce: '{secret}'")),
                "{rel}: the console must get the log line: {stderr}"
            );
        }
    }
}

/// A download that fails its checksum says so on stderr (on AWS the serial console, which
/// cloudtest reads while it waits for the client) in the one line cloudtest looks for, and
/// the boot stops there.
#[test]
fn a_failed_checksum_prints_the_boot_failed_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let production_dir = "readonly CT_INSTALL_DIR=/opt/velociraptor\n";
    let header = format!(
        "CT_VELOCIRAPTOR_VERSION=0.77.2\nCT_VELOCIRAPTOR_SHA256={}\n",
        "0".repeat(64)
    );
    // A stand-in for the release download: writes something that is not the release.
    let command =
        "curl() { local out; while [ $# -gt 0 ]; do [ \"$1\" = -o ] && out=\"$2\"; shift; done; \
                   printf 'not the release' >\"$out\"; }; install_binary 1";
    for (rel, text) in embedded_scripts() {
        assert!(text.contains(production_dir), "{rel}: no install directory");
        let text = text.replace(
            production_dir,
            &format!("readonly CT_INSTALL_DIR='{}'\n", dir.path().display()),
        );
        let (ok, _stdout, stderr, log) = run_sourced(&header, &text, command);
        assert!(!ok, "{rel}: a bad checksum must stop the boot");
        let line = format!(
            "cloudtest-boot-failed: velociraptor-v0.77.2-linux-amd64 failed its SHA-256 check (expected {})",
            "0".repeat(64)
        );
        assert!(stderr.contains(&line), "{rel}: {stderr}");
        assert!(
            log.contains("boot failed: velociraptor-v0.77.2"),
            "{rel}: {log}"
        );
        assert!(
            !dir.path().join("velociraptor").exists(),
            "{rel}: nothing installed"
        );
    }
}

/// The systemd units the library writes, byte for byte as the scripts wrote them before
/// issue 14 §6.
#[test]
fn boot_library_writes_the_velociraptor_units() {
    let server = "[Unit]\nDescription=Velociraptor server (cloudtest)\nAfter=network-online.target\n\
                  Wants=network-online.target\n\n[Service]\nUser=velociraptor\nGroup=velociraptor\n\
                  ExecStart=/usr/local/bin/velociraptor --config /etc/velociraptor/server.config.yaml frontend\n\
                  Restart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n";
    let client = "[Unit]\nDescription=Velociraptor client (cloudtest)\nAfter=network-online.target\n\
                  Wants=network-online.target\n\n[Service]\n\
                  ExecStart=/usr/local/bin/velociraptor --config /etc/velociraptor/client.config.yaml client\n\
                  Restart=always\nRestartSec=10\n\n[Install]\nWantedBy=multi-user.target\n";
    for (rel, text) in embedded_scripts() {
        for (role, want) in [("server", server), ("client", client)] {
            let (ok, stdout, stderr, _) = run_sourced("", &text, &format!("unit_file {role}"));
            assert!(ok, "{rel}: unit_file {role}: {stderr}");
            assert_eq!(stdout, want, "{rel}: unit of the {role}");
        }
    }
}

#[test]
fn arm_declares_contract_parameters_and_outputs() {
    let a = arm();
    assert_eq!(
        a["$schema"],
        "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    );
    let p = &a["parameters"];
    for name in [
        "runId",
        "expiresAt",
        "requirement",
        "velociraptorVersion",
        "velociraptorSha256",
        "adminUser",
        "adminPassword",
        "allowedCidr",
        "serverVmSize",
        "clientVmSize",
        "useSpot",
        "frontendPort",
        "guiPort",
    ] {
        assert!(p.get(name).is_some(), "parameter {name} missing");
    }
    assert!(
        p["allowedCidr"].get("defaultValue").is_none(),
        "allowedCidr must have no default"
    );
    assert_eq!(p["adminPassword"]["type"], "secureString");
    assert_exact_version(
        p["velociraptorVersion"]["defaultValue"]
            .as_str()
            .expect("version"),
    );
    assert_eq!(p["serverVmSize"]["defaultValue"], "Standard_B2s");
    assert_eq!(p["clientVmSize"]["defaultValue"], "Standard_B1s");
    assert_eq!(p["useSpot"]["type"], "bool");
    for o in OUTPUTS {
        let camel = format!("{}{}", o[..1].to_ascii_lowercase(), &o[1..]);
        assert!(a["outputs"].get(&camel).is_some(), "output {camel} missing");
    }
    let ca = a["outputs"]["caCertificate"]["value"]
        .as_str()
        .expect("ca output");
    assert!(ca.contains("instanceView.statuses[0].message"), "{ca}");
}

fn arm_resources(a: &Json) -> &Vec<Json> {
    a["resources"].as_array().expect("resources")
}

#[test]
fn arm_network_vm_and_tag_rules() {
    let a = arm();
    for r in arm_resources(&a) {
        let ty = r["type"].as_str().expect("type");
        assert_eq!(r["tags"], "[variables('tags')]", "{ty} is not tagged");
        if ty == "Microsoft.Network/networkSecurityGroups" {
            for rule in r["properties"]["securityRules"].as_array().expect("rules") {
                let p = &rule["properties"];
                if p["access"] == "Allow" && p["direction"] == "Inbound" {
                    let src = p["sourceAddressPrefix"].as_str().expect("source");
                    assert!(
                        !["*", "0.0.0.0/0", "Internet", "Any"].contains(&src),
                        "rule opens to {src}"
                    );
                    for closed in ["22", "3389", "*"] {
                        assert_ne!(
                            p["destinationPortRange"], closed,
                            "rule opens port {closed}"
                        );
                    }
                }
            }
        }
        if ty == "Microsoft.Network/publicIPAddresses" {
            assert_eq!(r["sku"]["name"], "Standard");
        }
        if ty == "Microsoft.Compute/virtualMachines" {
            let p = &r["properties"];
            assert_eq!(
                p["priority"],
                "[if(parameters('useSpot'), 'Spot', 'Regular')]"
            );
            assert_eq!(
                p["evictionPolicy"],
                "[if(parameters('useSpot'), 'Delete', null())]"
            );
            assert_eq!(
                p["storageProfile"]["imageReference"],
                "[variables('imageReference')]"
            );
            assert!(
                p["storageProfile"]["osDisk"]["managedDisk"].is_object(),
                "managed (encrypted at rest) disk"
            );
            assert_eq!(
                p["osProfile"]["linuxConfiguration"]["disablePasswordAuthentication"],
                true
            );
        }
    }
    let tags = a["variables"]["tags"].as_object().expect("tags variable");
    for k in TAG_KEYS {
        assert!(tags.contains_key(k), "tag {k} missing");
    }
    let image = &a["variables"]["imageReference"];
    assert_eq!(image["offer"], "ubuntu-24_04-lts");
    let gui_rule = arm_resources(&a)
        .iter()
        .flat_map(|r| {
            r["properties"]["securityRules"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|rule| {
            rule["properties"]["destinationPortRange"] == "[string(parameters('guiPort'))]"
        })
        .expect("a GUI rule");
    assert_eq!(
        gui_rule["properties"]["sourceAddressPrefix"],
        "[parameters('allowedCidr')]"
    );
}

/// Sources `script` after `header` in bash and parses what `command` (a call of
/// `merge_document 10.42.1.10`) prints.
fn render_merge_document(header: &str, script: &str, command: &str) -> Json {
    let (ok, stdout, stderr, _) = run_sourced(header, script, command);
    assert!(ok, "merge_document failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("merge document is not JSON ({e}): {stdout}"))
}

fn assert_merge_document(doc: &Json) {
    assert_eq!(doc["Client"]["server_urls"][0], "https://10.42.1.10:8000/");
    assert_eq!(doc["Client"]["use_self_signed_ssl"], true);
    assert_eq!(doc["Client"]["pinned_server_name"], "VelociraptorServer");
    assert_eq!(doc["Frontend"]["hostname"], "203.0.113.7");
    assert_eq!(doc["Frontend"]["bind_port"], 8000);
    assert_eq!(doc["GUI"]["bind_address"], "10.42.1.10");
    assert_eq!(doc["GUI"]["bind_port"], 8889);
    assert!(doc["Datastore"]["location"].is_string());
}

#[test]
fn cfn_server_script_builds_a_valid_merge_document() {
    let t = cfn();
    let (header, body) = cfn_user_data(&t, "ServerInstance");
    let samples = [
        ("${VelociraptorVersion}", "0.77.2"),
        ("${VelociraptorSha256}", &"a".repeat(64)),
        ("${AdminUser}", "cloudtest-admin"),
        (
            "${AdminPasswordSecret}",
            "arn:aws:secretsmanager:us-east-1:000000000000:secret:x",
        ),
        ("${AWS::Region}", "us-east-1"),
        ("${ServerAddress}", "203.0.113.7"),
        ("${FrontendPort}", "8000"),
        ("${GuiPort}", "8889"),
        ("${ServerReadyHandle}", "https://example.invalid/ready"),
        (
            "${ClientEnrollmentHandle}",
            "https://example.invalid/enroll",
        ),
    ];
    let mut rendered = header;
    for (k, v) in samples {
        assert!(rendered.contains(k), "header lacks {k}");
        rendered = rendered.replace(k, v);
    }
    assert!(
        !rendered.contains("${"),
        "unrendered substitution left: {rendered}"
    );
    let doc = render_merge_document(&rendered, &body, "merge_document 10.42.1.10");
    assert_merge_document(&doc);
    assert!(
        doc["Client"].get("nonce").is_none(),
        "on AWS Velociraptor generates the nonce"
    );
}

#[test]
fn arm_server_script_builds_a_valid_merge_document() {
    let header = "export CT_VELOCIRAPTOR_VERSION='0.77.2' CT_FRONTEND_PORT='8000' CT_GUI_PORT='8889' \
                  CT_PUBLIC_HOST='203.0.113.7' CT_ENROLLMENT_NONCE='0f8fad5b-d9cb-469f-a165-70867728950e'\n";
    let script = arm()["variables"]["serverScript"]
        .as_str()
        .expect("serverScript")
        .to_string();
    let doc = render_merge_document(
        header,
        &script,
        "merge_document 10.42.1.10 \"$CT_ENROLLMENT_NONCE\"",
    );
    assert_merge_document(&doc);
    assert_eq!(
        doc["Client"]["nonce"],
        "0f8fad5b-d9cb-469f-a165-70867728950e"
    );
    let header_expr = arm()["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find_map(|r| {
            r["properties"]["protectedSettings"]["commandToExecute"]
                .as_str()
                .filter(|c| c.contains("serverScript"))
                .map(str::to_string)
        })
        .expect("server extension");
    for var in [
        "CT_VELOCIRAPTOR_VERSION",
        "CT_FRONTEND_PORT",
        "CT_GUI_PORT",
        "CT_PUBLIC_HOST",
        "CT_ENROLLMENT_NONCE",
        "CT_ADMIN_PASSWORD",
        "CT_PRIVATE_IP",
    ] {
        assert!(
            header_expr.contains(&format!("export {var}=")),
            "ARM header does not export {var}"
        );
    }
}
