//! Every file under deploy/ parses, and names the ports, paths, probes, settings and metrics the
//! service really has. A renamed setting, route or metric breaks a test here, not a deployment.
#![allow(clippy::too_many_lines)] // tests read top to bottom as one story

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use autoseen::settings::Settings;
use common::*;
use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml_docs(path: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(&read(path))
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

/// Settings as the service would load them from `dir`, with `env` as its environment.
fn settings(dir: &Path, env: &[(String, String)]) -> Settings {
    let env: HashMap<String, String> = env.iter().cloned().collect();
    Settings::load_with_env(dir, Some(env)).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The settings a recipe starts `serve` with, which must start: an API key, and a webhook only the gateway
/// can call (a key or a token, or `webhook.allow_unsigned` said out loud).
fn ready(dir: &Path, env: &[(String, String)]) -> Settings {
    let s = settings(dir, env);
    s.check_ready_to_serve()
        .unwrap_or_else(|e| panic!("{}: serve would refuse: {e}", dir.display()));
    s
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// The Dockerfile instruction values of the final stage, by instruction name.
fn dockerfile() -> HashMap<String, Vec<String>> {
    let text = read("Dockerfile");
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for line in last_stage.replace("\\\n", " ").lines() {
        if let Some((instruction, rest)) = line.trim().split_once(' ')
            && instruction.chars().all(|c| c.is_ascii_uppercase())
        {
            out.entry(instruction.to_string())
                .or_default()
                .push(rest.trim().to_string());
        }
    }
    out
}

fn dockerfile_env(name: &str) -> String {
    dockerfile()["ENV"]
        .iter()
        .find_map(|e| e.strip_prefix(&format!("{name}=")).map(String::from))
        .unwrap_or_else(|| panic!("Dockerfile sets {name}"))
}

/// The exec-form command of the Dockerfile's HEALTHCHECK.
fn dockerfile_healthcheck() -> Vec<String> {
    let health = &dockerfile()["HEALTHCHECK"][0];
    let json = &health[health.find('[').unwrap()..];
    serde_json::from_str(json).unwrap()
}

#[test]
fn the_dockerfile_runs_the_shipped_config_as_a_non_root_user() {
    let d = dockerfile();
    let workdir = &d["WORKDIR"][0];
    let shipped = settings(&repo("config"), &[]);

    assert_eq!(d["USER"], ["10001"]);
    assert!(
        d["COPY"]
            .iter()
            .any(|c| c == &format!("config {workdir}/config"))
    );
    assert_eq!(
        dockerfile_env("AUTOSEEN_CONFIG"),
        format!("{workdir}/config")
    );
    assert_eq!(d["EXPOSE"], [port_of(&shipped.server.listen).to_string()]);
    // The store's folder is the volume.
    let store = shipped.store.sqlite_path().unwrap();
    let store_dir = store.parent().unwrap().display().to_string();
    assert_eq!(d["VOLUME"], [format!("{workdir}/{store_dir}")]);
    assert_eq!(dockerfile_healthcheck()[..2], ["autoseen", "probe"]);
}

/// The variables `deploy/.env.example` sets.
fn env_example() -> Vec<(String, String)> {
    read("deploy/.env.example")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn the_compose_file_matches_the_image_and_the_settings() {
    let compose = &yaml_docs("deploy/docker-compose.yml")[0];
    let svc = &compose["services"]["autoseen"];
    let env_example = env_example();
    let s = ready(&repo("config"), &env_example);
    let workdir = &dockerfile()["WORKDIR"][0];

    assert_eq!(
        s.wasend.api_key.as_ref().unwrap().expose(),
        "your-wasend-api-key"
    );
    assert!(s.admin.token.is_some() && s.webhook.hmac_key.is_some());
    assert_eq!(svc["env_file"], ".env");
    let port = port_of(&s.server.listen);
    assert_eq!(svc["ports"][0], format!("{port}:{port}"));
    assert_eq!(
        svc["environment"]["AUTOSEEN_CONFIG"],
        dockerfile_env("AUTOSEEN_CONFIG")
    );
    let mounts: Vec<&str> = svc["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        mounts.contains(&format!("../config:{}:ro", dockerfile_env("AUTOSEEN_CONFIG")).as_str()),
        "{mounts:?}"
    );
    let store = s.store.sqlite_path().unwrap();
    let store_dir = format!("{workdir}/{}", store.parent().unwrap().display());
    assert!(
        mounts.contains(&format!("autoseen-data:{store_dir}").as_str()),
        "{mounts:?}"
    );
    assert!(compose["volumes"].get("autoseen-data").is_some());
    let health: Vec<String> = serde_json::from_value(svc["healthcheck"]["test"].clone()).unwrap();
    assert_eq!(health[0], "CMD");
    assert_eq!(health[1..], dockerfile_healthcheck());
    assert_eq!(
        compose["services"]["bot"]["depends_on"]["autoseen"]["condition"],
        "service_healthy"
    );
}

fn kubernetes() -> HashMap<String, Value> {
    let kustomization = &yaml_docs("deploy/kubernetes/base/kustomization.yaml")[0];
    let mut by_kind = HashMap::new();
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = std::fs::read_dir(repo("deploy/kubernetes/base"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization lists every manifest");
    for file in listed {
        for doc in yaml_docs(&format!("deploy/kubernetes/base/{file}")) {
            by_kind.insert(doc["kind"].as_str().unwrap().to_string(), doc);
        }
    }
    // The opt-in monitoring component: its ServiceMonitor.
    let component = &yaml_docs("deploy/kubernetes/components/monitoring/kustomization.yaml")[0];
    assert_eq!(component["kind"], "Component");
    for file in component["resources"].as_array().unwrap() {
        let path = format!(
            "deploy/kubernetes/components/monitoring/{}",
            file.as_str().unwrap()
        );
        for doc in yaml_docs(&path) {
            by_kind.insert(doc["kind"].as_str().unwrap().to_string(), doc);
        }
    }
    by_kind
}

#[test]
fn the_kubernetes_manifests_match_the_settings_they_carry() {
    let k = kubernetes();
    let config_map = &k["ConfigMap"]["data"];
    let dir = tempfile::tempdir().unwrap();
    for file in ["autoseen.toml", "rules.toml"] {
        std::fs::write(dir.path().join(file), config_map[file].as_str().unwrap()).unwrap();
    }
    let secret_env: Vec<(String, String)> = k["Secret"]["stringData"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let s = ready(dir.path(), &secret_env);
    autoseen::rules::load(dir.path()).unwrap_or_else(|e| panic!("ConfigMap rules.toml: {e}"));
    let pod = &k["Deployment"]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let mount = |volume: &str| {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("a mount of {volume}"))["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };

    assert!(s.wasend.api_key.is_some() && s.webhook.hmac_key.is_some() && s.admin.token.is_some());
    assert_eq!(k["Deployment"]["spec"]["replicas"], 1);
    assert_eq!(k["Deployment"]["spec"]["strategy"]["type"], "Recreate");
    assert_eq!(
        container["ports"][0]["containerPort"].as_u64(),
        Some(port_of(&s.server.listen))
    );
    assert_eq!(container["ports"][0]["name"], "http");
    let config_env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "AUTOSEEN_CONFIG")
        .unwrap();
    assert_eq!(config_env["value"].as_str().unwrap(), mount("config"));
    let store = s.store.sqlite_path().unwrap();
    assert_eq!(Path::new(&mount("data")), store.parent().unwrap());
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["configMap"]["name"] == k["ConfigMap"]["metadata"]["name"])
    );
    assert!(
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m.get("subPath").is_none()),
        "subPath mounts do not update"
    );
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        k["Secret"]["metadata"]["name"]
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(k["Service"]["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        k["ServiceMonitor"]["spec"]["endpoints"][0]["path"],
        "/metrics"
    );
    let annotations = &k["Deployment"]["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations["prometheus.io/port"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap(),
        port_of(&s.server.listen)
    );
    let claim = &pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .unwrap()["persistentVolumeClaim"];
    assert_eq!(
        claim["claimName"],
        k["PersistentVolumeClaim"]["metadata"]["name"]
    );
}

fn unit_file() -> Vec<(String, String)> {
    read("deploy/systemd/autoseen.service")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_and_its_settings_are_real() {
    let unit = unit_file();
    let get = |k: &str| {
        unit.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let env: Vec<(String, String)> = get("Environment")
        .iter()
        .map(|e| {
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    // The unit's secrets come from /etc/autoseen/env, which the operator writes.
    let s = settings(&repo("config"), &env);

    assert_eq!(
        get("ExecStart"),
        ["/usr/local/bin/autoseen serve --config /etc/autoseen"]
    );
    assert_eq!(get("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("StateDirectory"), ["autoseen"]);
    assert!(
        s.store
            .sqlite_path()
            .unwrap()
            .starts_with("/var/lib/autoseen"),
        "{:?}",
        s.store.path
    );
    assert_eq!(get("DynamicUser"), ["yes"]);
    assert_eq!(get("ProtectSystem"), ["strict"]);
    assert_eq!(get("NoNewPrivileges"), ["yes"]);
    assert_eq!(get("KillSignal"), ["SIGTERM"]);
}

#[test]
fn the_postgres_overlay_runs_rolling_replicas_without_a_volume_on_the_url_from_the_secret() {
    let base = kubernetes();
    let overlay = &yaml_docs("deploy/kubernetes/overlays/postgres/kustomization.yaml")[0];
    let resources = overlay["resources"].as_array().unwrap();
    let patch =
        |file: &str| yaml_docs(&format!("deploy/kubernetes/overlays/postgres/{file}"))[0].clone();
    let deployment = patch("deployment-patch.yaml");
    let secret = patch("secret-patch.yaml");
    let pdb = patch("pdb.yaml");
    let inline: Value =
        serde_yaml::from_str(overlay["patches"][2]["patch"].as_str().unwrap()).unwrap();
    let base_pod = &base["Deployment"]["spec"]["template"]["spec"];
    // The settings the pods get: the base ConfigMap, the base Secret, and the overlay's URL.
    let dir = tempfile::tempdir().unwrap();
    for file in ["autoseen.toml", "rules.toml"] {
        let text = base["ConfigMap"]["data"][file].as_str().unwrap();
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let mut env: Vec<(String, String)> = Vec::new();
    for data in [&base["Secret"]["stringData"], &secret["stringData"]] {
        for (k, v) in data.as_object().unwrap() {
            env.push((k.clone(), v.as_str().unwrap().to_string()));
        }
    }
    mount_the_postgres_ca(dir.path(), &mut env, &deployment);
    let s = ready(dir.path(), &env);

    assert_eq!(*resources, ["../../base", "pdb.yaml", "postgres-ca.yaml"]);
    for p in overlay["patches"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["path"].as_str())
    {
        assert!(
            repo(&format!("deploy/kubernetes/overlays/postgres/{p}")).is_file(),
            "{p}"
        );
    }
    assert!(matches!(
        s.store.backend(),
        autoseen::settings::Backend::Postgres(_)
    ));
    assert_eq!(
        secret["metadata"]["name"],
        base["Secret"]["metadata"]["name"]
    );
    assert_eq!(
        deployment["metadata"]["name"],
        base["Deployment"]["metadata"]["name"]
    );
    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    // The volume the patch deletes is the base's store volume, and its claim goes too.
    let deleted = &deployment["spec"]["template"]["spec"]["volumes"][0];
    assert_eq!(deleted["$patch"], "delete");
    let base_volume = base_pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == deleted["name"])
        .expect("the base has the volume the overlay deletes");
    assert_eq!(
        (&inline["kind"], &inline["metadata"]["name"]),
        (
            &Value::from("PersistentVolumeClaim"),
            &base_volume["persistentVolumeClaim"]["claimName"]
        )
    );
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["name"],
        deleted["name"]
    );
    assert_eq!(pdb["kind"], "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        base["Deployment"]["spec"]["selector"]["matchLabels"]
    );
}

/// The overlay's URL checks the server with `sslmode=verify-full` against the CA file the overlay mounts from
/// its ConfigMap; that file, written into `dir`, stands in for the mount in `env`'s URL.
fn mount_the_postgres_ca(dir: &Path, env: &mut [(String, String)], deployment: &Value) {
    let ca = &yaml_docs("deploy/kubernetes/overlays/postgres/postgres-ca.yaml")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == ca["metadata"]["name"])
        .expect("the overlay mounts the CA's ConfigMap");
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the container mounts the CA volume");
    let (key, pem) = ca["data"].as_object().unwrap().iter().next().unwrap();
    let mounted = format!("{}/{key}", mount["mountPath"].as_str().unwrap());
    let (_, url) = env
        .iter_mut()
        .find(|(k, _)| k == "AUTOSEEN__STORE__URL")
        .unwrap();
    assert!(
        url.ends_with(&format!("?sslmode=verify-full&sslrootcert={mounted}")),
        "{url}"
    );
    let local = dir.join(key);
    std::fs::write(&local, pem.as_str().unwrap()).unwrap();
    *url = url.replace(&mounted, &local.display().to_string());
}

#[test]
fn the_postgres_compose_file_runs_two_replicas_on_its_database() {
    let compose = &yaml_docs("deploy/docker-compose.postgres.yml")[0];
    let (db, svc) = (
        &compose["services"]["postgres"],
        &compose["services"]["autoseen"],
    );
    let env_example = env_example();
    let password = &env_example
        .iter()
        .find(|(k, _)| k == "POSTGRES_PASSWORD")
        .unwrap()
        .1;
    let url = svc["environment"]["AUTOSEEN__STORE__URL"]
        .as_str()
        .unwrap()
        .replace("${POSTGRES_PASSWORD}", password);
    let mut env = env_example.clone();
    env.push(("AUTOSEEN__STORE__URL".into(), url.clone()));
    let s = ready(&repo("config"), &env);
    let parsed = reqwest::Url::parse(&url).unwrap();

    assert!(matches!(
        s.store.backend(),
        autoseen::settings::Backend::Postgres(_)
    ));
    assert_eq!(parsed.host_str(), Some("postgres"), "the service name");
    assert_eq!(
        parsed.username(),
        db["environment"]["POSTGRES_USER"].as_str().unwrap()
    );
    assert_eq!(
        parsed.path(),
        format!("/{}", db["environment"]["POSTGRES_DB"].as_str().unwrap())
    );
    assert!(svc["deploy"]["replicas"].as_u64().unwrap() >= 2);
    assert_eq!(
        svc["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    let mounts = svc["volumes"].as_array().unwrap();
    assert!(
        mounts
            .iter()
            .all(|m| !m.as_str().unwrap().contains("/app/data")),
        "no store volume"
    );
    let health: Vec<String> = serde_json::from_value(svc["healthcheck"]["test"].clone()).unwrap();
    assert_eq!(health[1..], dockerfile_healthcheck());
}

/// Every probe path and metric named under deploy/ answers on a real instance.
#[tokio::test]
async fn probes_and_dashboard_metrics_named_in_deploy_exist_on_a_running_instance() {
    let fake = FakeWasend::start().await;
    fake.script([Answer::status(500), Answer::status(400)]);
    let rules = "[defaults]\ndelay = \"0s\"\n[[rules]]\nname = \"later\"\nsessions = [\"slow\"]\ndelay = \"1h\"\n";
    let app = TestApp::spawn_process(&fake, Options::default().rules(rules)).await;
    for (i, session) in ["default", "default", "slow"].iter().enumerate() {
        app.send(&message(session, "491511000001@c.us", &format!("m{i}")))
            .await;
    }
    app.admin(reqwest::Method::POST, "/admin/reload").await;
    fake.wait_for_calls(3, Duration::from_secs(10)).await;
    let k = kubernetes();
    let container = &k["Deployment"]["spec"]["template"]["spec"]["containers"][0];
    let mut paths = vec![
        container["livenessProbe"]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_string(),
        container["readinessProbe"]["httpGet"]["path"]
            .as_str()
            .unwrap()
            .to_string(),
        k["ServiceMonitor"]["spec"]["endpoints"][0]["path"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    let health = dockerfile_healthcheck();
    paths.push(reqwest::Url::parse(&health[2]).unwrap().path().to_string());
    for path in paths {
        let status = app.http.get(app.url(&path)).send().await.unwrap().status();
        assert_eq!(status, 200, "{path}");
    }

    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/autoseen.json")).unwrap();
    let metric = regex::Regex::new(r"autoseen_[a-z_]+").unwrap();
    let mut named = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            named.extend(
                metric
                    .find_iter(target["expr"].as_str().unwrap())
                    .map(|m| m.as_str().to_string()),
            );
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    let declared = |name: &str| {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        autoseen::metric_names::ALL
            .iter()
            .any(|(n, _, _)| *n == name || *n == base)
    };
    for name in &named {
        assert!(
            declared(name),
            "the dashboard uses {name}, which src/metric_names.rs does not declare"
        );
    }
    // Every outcome above is counted once its send is recorded; wait for the last of them.
    let exported = |text: &str, name: &str| {
        text.lines()
            .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
    };
    let metrics = eventually(
        Duration::from_secs(10),
        "every dashboard metric exported",
        async || {
            let text = app
                .http
                .get(app.url("/metrics"))
                .send()
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            named
                .iter()
                .all(|name| exported(&text, name))
                .then_some(text)
        },
    )
    .await;
    assert!(metrics.contains(autoseen::metric_names::RECEIPTS_DEAD));
}
