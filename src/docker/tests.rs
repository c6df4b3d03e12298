//! The Docker policy on JSON bodies: each refused shape, its allowed neighbour.

use super::*;
use serde_json::json;

fn proxy() -> Proxy {
    Proxy {
        socket: "/run/user/1/agentbox/docker-1/docker.sock".into(),
        upstream: "/var/run/docker.sock".into(),
        roots: vec!["/home/u/p".into(), "/srv/rw".into()],
    }
}

/// A fake host: `/home/u/p/link` is a symlink to `/`, `/home/u/p/sock` to the Docker socket.
fn fake(p: &Path) -> Option<PathBuf> {
    let s = p.to_str()?;
    for (link, target) in [
        ("/home/u/p/link", "/"),
        ("/home/u/p/sock", "/var/run/docker.sock"),
    ] {
        if let Some(rest) = s.strip_prefix(link) {
            return Some(PathBuf::from(format!("{target}{rest}").replace("//", "/")));
        }
    }
    if s.starts_with("/unreadable") {
        return None;
    }
    Some(p.to_owned())
}

fn create(hc: Value) -> Result<(), Refusal> {
    let mut owned = Owned::default();
    owned.add_container("0123abc");
    owned.add_container("/mine");
    check_create(
        &json!({"Image": "alpine", "HostConfig": hc}),
        &proxy(),
        &owned,
        &fake,
    )
}

#[test]
fn refused_host_configs() {
    let refused = [
        json!({"Privileged": true}),
        json!({"privileged": true}),
        json!({"PRIVILEGED": 1}),
        json!({"CapAdd": ["SYS_ADMIN"]}),
        json!({"capadd": "ALL"}),
        json!({"Devices": [{"PathOnHost": "/dev/sda"}]}),
        json!({"DeviceRequests": [{"Count": -1}]}),
        json!({"DeviceCgroupRules": ["a *:* rwm"]}),
        json!({"NetworkMode": "host"}),
        json!({"NetworkMode": "HOST"}),
        json!({"PidMode": "host"}),
        json!({"IpcMode": "host"}),
        json!({"UTSMode": "host"}),
        json!({"UsernsMode": "host"}),
        json!({"CgroupnsMode": "host"}),
        json!({"PidMode": "container:theirs"}),
        json!({"NetworkMode": "container:0123"}),
        json!({"SecurityOpt": ["seccomp=unconfined"]}),
        json!({"SecurityOpt": ["seccomp:unconfined"]}),
        json!({"SecurityOpt": ["apparmor=unconfined"]}),
        json!({"SecurityOpt": ["label=disable"]}),
        json!({"SecurityOpt": ["label:disable"]}),
        json!({"SecurityOpt": ["systempaths=unconfined"]}),
        json!({"MaskedPaths": []}),
        json!({"ReadonlyPaths": []}),
        json!({"VolumesFrom": ["theirs:ro"]}),
        json!({"Links": ["theirs:db"]}),
        json!({"links": ["/theirs"]}),
        json!({"Binds": ["/:/host"]}),
        json!({"Binds": ["/etc:/etc:ro"]}),
        json!({"Binds": ["/home/u:/h"]}),
        json!({"Binds": ["/home/u/p/../q:/q"]}),
        json!({"Binds": ["/home/u/p/link/etc:/e"]}),
        json!({"Binds": ["/home/u/p/sock:/var/run/docker.sock"]}),
        json!({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]}),
        json!({"Binds": ["/var/run:/r"]}),
        json!({"Binds": ["/unreadable/x:/x"]}),
        json!({"Binds": ["./rel:/x"]}),
        json!({"binds": ["/:/host"]}),
        json!({"Mounts": [{"Type": "bind", "Source": "/", "Target": "/h"}]}),
        json!({"Mounts": [{"type": "bind", "source": "/etc", "target": "/h"}]}),
        json!({"Mounts": [{"Type": "volume", "Source": "/etc", "Target": "/h"}]}),
        json!({"Mounts": [{"Type": "npipe", "Source": "x", "Target": "/h"}]}),
        json!({"Mounts": [{"Type": "volume", "Source": "v", "Target": "/h",
            "VolumeOptions": {"DriverConfig": {"Name": "local",
                "Options": {"type": "none", "o": "bind", "device": "/"}}}}]}),
        // Go would read `ſ` as `s`: "Bindſ" is Binds to the daemon.
        json!({"Bind\u{17f}": ["/:/host"]}),
    ];
    for hc in refused {
        assert!(create(hc.clone()).is_err(), "{hc}");
    }
}

#[test]
fn allowed_host_configs() {
    let allowed = [
        json!({}),
        json!(null),
        json!({"Privileged": false, "CapAdd": [], "CapDrop": ["ALL"], "Devices": null}),
        json!({"NetworkMode": "bridge", "PidMode": "", "IpcMode": "private"}),
        json!({"NetworkMode": "my-net"}),
        json!({"NetworkMode": "container:0123abc"}),
        json!({"PidMode": "container:mine"}),
        json!({"VolumesFrom": ["mine:ro"]}),
        json!({"Links": ["mine:db", "/0123abc"]}),
        json!({"SecurityOpt": ["no-new-privileges"]}),
        json!({"Binds": ["/home/u/p:/src", "/home/u/p/sub/new:/x:ro", "/srv/rw/a:/a:rw"]}),
        json!({"Binds": ["cache:/root/.cache", "my_vol-1.x:/v"]}),
        json!({"Mounts": [{"Type": "bind", "Source": "/home/u/p/build", "Target": "/b"},
                          {"Type": "volume", "Source": "data", "Target": "/d"},
                          {"Type": "tmpfs", "Target": "/t"}]}),
        json!({"Sysctls": {"net.ipv4.ip_forward": "1"}, "Memory": 1024, "Init": true}),
    ];
    for hc in allowed {
        assert_eq!(create(hc.clone()), Ok(()), "{hc}");
    }
    // Labels and env are data, not keys the daemon reads: anything goes there.
    let body = json!({"Image": "a", "Labels": {"ſ": "x"}, "Env": ["PRIVILEGED=true"]});
    assert_eq!(
        check_create(&body, &proxy(), &Owned::default(), &fake),
        Ok(())
    );
    assert!(check_create(&json!([1]), &proxy(), &Owned::default(), &fake).is_err());
}

#[test]
fn routes() {
    let cases = [
        (
            "POST",
            "/v1.43/containers/create?name=x",
            Route::ContainerCreate,
        ),
        ("POST", "/containers/create", Route::ContainerCreate),
        (
            "POST",
            "/v1.43/containers/abc/start",
            Route::ContainerStart("abc".into()),
        ),
        (
            "POST",
            "/v1.43/containers/abc/exec",
            Route::ExecCreate("abc".into()),
        ),
        (
            "POST",
            "/v1.43/exec/e1/start",
            Route::ExecStart("e1".into()),
        ),
        (
            "POST",
            "/v1.43/containers/abc/attach?stream=1",
            Route::Attach("abc".into()),
        ),
        (
            "GET",
            "/v1.43/containers/abc/attach/ws",
            Route::Attach("abc".into()),
        ),
        (
            "PUT",
            "/v1.43/containers/abc/archive?path=/",
            Route::ArchivePut("abc".into()),
        ),
        (
            "POST",
            "/v1.43/containers/abc/update",
            Route::ContainerUpdate("abc".into()),
        ),
        ("POST", "/v1.43/volumes/create", Route::VolumeCreate),
        ("POST", "/v1.43/build?t=x", Route::Build),
        ("POST", "/v1.43/plugins/pull?remote=x", Route::Plugins),
        ("GET", "/v1.43/plugins", Route::Other),
        ("POST", "/v1.43/services/create", Route::Swarm),
        ("POST", "/v1.43/swarm/init", Route::Swarm),
        ("POST", "/session", Route::Upgraded),
        ("GET", "/v1.43/containers/json", Route::Other),
        (
            "GET",
            "/v1.43/containers/abc/json",
            Route::ContainerRead("abc".into()),
        ),
        (
            "GET",
            "/v1.43/containers/abc/logs?follow=1",
            Route::ContainerRead("abc".into()),
        ),
        (
            "HEAD",
            "/v1.43/containers/abc/archive?path=/",
            Route::ContainerRead("abc".into()),
        ),
        (
            "GET",
            "/v1.43/containers/abc/export",
            Route::ContainerRead("abc".into()),
        ),
        (
            "POST",
            "/v1.43/commit?repo=x&container=abc",
            Route::ContainerRead("abc".into()),
        ),
        (
            "POST",
            "/v1.43/commit?repo=x",
            Route::ContainerRead("".into()),
        ),
        ("GET", "/_ping", Route::Other),
        // Escaped slashes and letters decode before routing.
        ("POST", "/v1.43/containers/%63reate", Route::ContainerCreate),
        ("POST", "/v1.43/exec/e1%2Fx/start", Route::Other),
        // Dot segments and doubled slashes resolve as a cleaning router would.
        (
            "POST",
            "/v1.43/images/../containers/./create",
            Route::ContainerCreate,
        ),
        (
            "POST",
            "//v1.43//containers/create/",
            Route::ContainerCreate,
        ),
        (
            "POST",
            "/v1.43/containers/x/%2e%2e/create",
            Route::ContainerCreate,
        ),
        // The absolute form, which Go's server would route by its path: refused.
        (
            "POST",
            "http://d/v1.43/containers/create",
            Route::Unparsable,
        ),
        ("POST", "*", Route::Unparsable),
    ];
    for (m, t, r) in cases {
        assert_eq!(route(m, t), r, "{m} {t}");
    }
}

#[test]
fn exec_attach_and_copies_only_into_the_sandboxs_containers() {
    let mut owned = Owned::default();
    owned.add_container("mine-full-id");
    owned.add_exec("e-mine");
    let p = proxy();
    let c = |r: Route, body: Option<Value>, owned: &Owned| {
        check(&r, "/x", body.as_ref(), &p, owned, &fake)
    };
    let exec = Some(json!({"Cmd": ["sh"]}));
    assert_eq!(
        c(
            Route::ExecCreate("mine-full-id".into()),
            exec.clone(),
            &owned
        ),
        Ok(())
    );
    assert!(c(Route::ExecCreate("theirs".into()), exec.clone(), &owned).is_err());
    // A prefix of the sandbox's id could be another container's name.
    assert!(c(Route::ExecCreate("mine".into()), exec, &owned).is_err());
    let privileged = Some(json!({"Cmd": ["sh"], "privileged": true}));
    assert!(c(Route::ExecCreate("mine-full-id".into()), privileged, &owned).is_err());
    assert_eq!(c(Route::ExecStart("e-mine".into()), None, &owned), Ok(()));
    assert!(c(Route::ExecStart("e-theirs".into()), None, &owned).is_err());
    assert_eq!(
        c(Route::Attach("mine-full-id".into()), None, &owned),
        Ok(())
    );
    assert!(c(Route::Attach("theirs".into()), None, &owned).is_err());
    assert!(c(Route::ArchivePut("theirs".into()), None, &owned).is_err());
    assert!(c(Route::ContainerRead("theirs".into()), None, &owned).is_err());
    assert!(c(Route::ContainerRead("".into()), None, &owned).is_err());
    assert_eq!(
        c(Route::ContainerRead("mine-full-id".into()), None, &owned),
        Ok(())
    );
    // Start: no HostConfig smuggled in at start; an empty body or `{}` is fine.
    assert_eq!(c(Route::ContainerStart("x".into()), None, &owned), Ok(()));
    assert_eq!(
        c(Route::ContainerStart("x".into()), Some(json!({})), &owned),
        Ok(())
    );
    let late = Some(json!({"Privileged": true}));
    assert!(c(Route::ContainerStart("x".into()), late, &owned).is_err());
    // Update takes resources: devices refused there too.
    let upd = Some(json!({"Devices": [{"PathOnHost": "/dev/mem"}]}));
    assert!(c(Route::ContainerUpdate("mine-full-id".into()), upd, &owned).is_err());
    let upd = Some(json!({"Memory": 1000}));
    assert_eq!(
        c(Route::ContainerUpdate("mine-full-id".into()), upd, &owned),
        Ok(())
    );
}

#[test]
fn bind_sources_are_checked_again_at_start() {
    let body = json!({"HostConfig": {"Binds": ["/home/u/p/d:/d", "vol:/v"],
        "Mounts": [{"Type": "bind", "Source": "/home/u/p/m", "Target": "/m"}]}});
    assert_eq!(bind_sources(&body), ["/home/u/p/d", "/home/u/p/m"]);
    let mut owned = Owned::default();
    owned.add_container_with("c1", bind_sources(&body));
    let start = Route::ContainerStart("c1".into());
    assert_eq!(check(&start, "/", None, &proxy(), &owned, &fake), Ok(()));
    // `d` became a symlink to / after the create.
    let swapped = |p: &Path| match p == Path::new("/home/u/p/d") {
        true => Some(PathBuf::from("/")),
        false => fake(p),
    };
    assert!(check(&start, "/", None, &proxy(), &owned, &swapped).is_err());
    assert_eq!(route("POST", "/v1.43/containers/c1/restart"), start);
    // Started by an id prefix (or a name it was renamed to): every own source is checked.
    let by_prefix = Route::ContainerStart("c".into());
    assert_eq!(
        check(&by_prefix, "/", None, &proxy(), &owned, &fake),
        Ok(())
    );
    assert!(check(&by_prefix, "/", None, &proxy(), &owned, &swapped).is_err());
    // A version without a dot is a version to the daemon's router.
    assert_eq!(
        route("POST", "/v1/containers/create"),
        Route::ContainerCreate
    );
    assert_eq!(route("POST", "/vx/containers/create"), Route::Other);
}

#[test]
fn volumes_builds_plugins_swarm() {
    assert!(
        check_volume(&json!({"Name": "v", "DriverOpts": {"o": "bind", "device": "/"}})).is_err()
    );
    assert!(check_volume(&json!({"Name": "v", "driveropts": {"device": "/"}})).is_err());
    assert_eq!(
        check_volume(&json!({"Name": "v", "DriverOpts": {}})),
        Ok(())
    );
    assert_eq!(check_volume(&json!({"Name": "v"})), Ok(()));
    let o = Owned::default();
    assert!(check_build("/v1.43/build?t=x&networkmode=host", &o).is_err());
    assert!(check_build("/v1.43/build?networkmode=%68ost", &o).is_err());
    assert!(check_build("/v1.43/build?networkmode=container:theirs", &o).is_err());
    assert_eq!(
        check_build("/v1.43/build?networkmode=default&t=host", &o),
        Ok(())
    );
    assert!(check(&Route::Plugins, "/", None, &proxy(), &o, &fake).is_err());
    assert!(check(&Route::Swarm, "/", None, &proxy(), &o, &fake).is_err());
    assert_eq!(check(&Route::Other, "/", None, &proxy(), &o, &fake), Ok(()));
}

#[test]
fn host_config_fields_at_the_top_of_the_body_are_checked() {
    // Daemons before 25.0 read these from the top of a body that has no `HostConfig`.
    let o = Owned::default();
    for body in [
        json!({"Image": "a", "Privileged": true}),
        json!({"Image": "a", "Binds": ["/:/host"]}),
        json!({"Image": "a", "CapAdd": ["SYS_ADMIN"], "HostConfig": {}}),
        json!({"Image": "a", "PidMode": "host"}),
    ] {
        assert!(check_create(&body, &proxy(), &o, &fake).is_err(), "{body}");
    }
    let body = json!({"Image": "a", "Binds": ["/home/u/p/d:/d"], "Volumes": {"/v": {}}});
    assert_eq!(check_create(&body, &proxy(), &o, &fake), Ok(()));
    assert_eq!(bind_sources(&body), ["/home/u/p/d"]);
}

#[test]
fn security_options_only_keep_the_protections() {
    for opt in [
        r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#,
        "seccomp=/etc/other.json",
        "label=type:spc_t",
        "label:type:unconfined_t",
        "label=user:system_u",
        "apparmor=some-host-profile",
        "writable-cgroups=true",
        "LABEL=disable",
    ] {
        assert!(create(json!({"SecurityOpt": [opt]})).is_err(), "{opt}");
    }
    for opt in [
        "no-new-privileges",
        "no-new-privileges:true",
        "no-new-privileges=true",
        "label=level:s0:c100,c200",
        "seccomp=builtin",
        "apparmor=docker-default",
    ] {
        assert_eq!(create(json!({"SecurityOpt": [opt]})), Ok(()), "{opt}");
    }
}

#[test]
fn the_name_recorded_is_the_one_the_daemon_gives() {
    let name = |t: &str| created_name(t);
    assert_eq!(name("/containers/create?name=mine"), Some("mine".into()));
    // Go's FormValue takes the first value; a key without `=` is an empty one.
    assert_eq!(
        name("/containers/create?name=mine&name=theirs"),
        Some("mine".into())
    );
    assert_eq!(name("/containers/create?name&name=theirs"), None);
    assert_eq!(name("/containers/create?na%6De=x"), Some("x".into()));
    // A pair Go skips (a `;`, a bad escape) does not count.
    assert_eq!(name("/containers/create?name=a;b&name=c"), Some("c".into()));
    assert_eq!(name("/containers/create?name=%zz&name=c"), Some("c".into()));
    assert_eq!(name("/containers/create?name=%+f&name=c"), Some("c".into()));
    // A name that is another container's full id stands for that container.
    let id = "ab".repeat(32);
    assert_eq!(name(&format!("/containers/create?name={id}")), None);
    assert_eq!(name("/containers/create"), None);
    // Renaming another container (to a name the sandbox's had) is refused.
    let mut owned = Owned::default();
    owned.add_container("mine");
    let r = route("POST", "/v1.43/containers/theirs/rename?name=mine");
    assert_eq!(r, Route::Rename("theirs".into()));
    assert!(check(&r, "/", None, &proxy(), &owned, &fake).is_err());
    let r = route("POST", "/v1.43/containers/mine/rename?name=x");
    assert_eq!(check(&r, "/", None, &proxy(), &owned, &fake), Ok(()));
}
