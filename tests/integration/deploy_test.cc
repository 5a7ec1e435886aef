// The deploy files agree with each other and with the programs: every flag they pass exists
// (as `--help` of the built rungd and rung-worker lists it), ports, paths, volumes, secrets
// and service names line up across the systemd units, the Kubernetes manifests, the Slurm
// script and the container file.
#include <cctype>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/cluster.h"
#include "yaml-cpp/yaml.h"

namespace rung::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Deploy(const std::string& rel) { return SourceDir() + "/deploy/" + rel; }

// The long flags a program's --help lists.
std::set<std::string> Flags(const std::string& program) {
  FILE* f = popen((BinDir() + program + " --help").c_str(), "r");
  std::string help;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) help.append(buf, n);
  pclose(f);
  std::set<std::string> out;  // every "--" followed by [a-z][a-z-]*
  for (size_t at = help.find("--"); at != std::string::npos; at = help.find("--", at + 2)) {
    size_t end = at + 2;
    while (end < help.size() &&
           (std::islower(static_cast<unsigned char>(help[end])) || help[end] == '-'))
      ++end;
    if (end > at + 2 && help[at + 2] != '-') out.insert(help.substr(at, end - at));
  }
  EXPECT_GT(out.size(), 5u) << program;
  return out;
}

// "--name=value" or "--name" from one argument.
std::string FlagOf(const std::string& arg) { return arg.substr(0, arg.find('=')); }
std::string ValueOf(const std::string& arg) {
  return arg.find('=') == std::string::npos ? "" : arg.substr(arg.find('=') + 1);
}

int PortOf(const std::string& hostport) {
  int port = 0;
  EXPECT_TRUE(absl::SimpleAtoi(hostport.substr(hostport.rfind(':') + 1), &port)) << hostport;
  return port;
}

// `Key=value` lines of a systemd unit.
std::map<std::string, std::string> Unit(const std::string& path) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(Slurp(path), '\n')) {
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    const size_t eq = line.find('=');
    if (eq != absl::string_view::npos)
      out[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  return out;
}

// The words of a command line that look like flags.
std::vector<std::string> FlagsIn(const std::string& command) {
  std::vector<std::string> out;
  for (absl::string_view w :
       absl::StrSplit(command, absl::ByAnyChar(" \t\n\\\""), absl::SkipEmpty())) {
    if (absl::StartsWith(w, "--")) out.push_back(FlagOf(std::string(w)));
  }
  return out;
}

TEST(DeployTest, SystemdUnitsUseRealFlagsAndTheirPathsAgree) {
  const auto rungd = Flags("/server/rungd");
  const auto worker = Flags("/worker/rung-worker");
  auto unit = Unit(Deploy("systemd/rungd.service"));
  for (const auto& f : FlagsIn(unit["ExecStart"]))
    EXPECT_TRUE(rungd.count(f)) << "rungd.service: " << f;
  EXPECT_THAT(unit["ExecStart"], ::testing::HasSubstr("--config /etc/rung/rungd.yaml"));
  YAML::Node cfg = YAML::LoadFile(Deploy("systemd/rungd.yaml"));
  for (const auto& kv : cfg) {
    EXPECT_TRUE(rungd.count("--" + kv.first.as<std::string>()))
        << "rungd.yaml key " << kv.first.as<std::string>();
  }
  EXPECT_EQ(cfg["data-dir"].as<std::string>(), "/var/lib/" + unit["StateDirectory"]);
  EXPECT_EQ(unit["ReadWritePaths"], cfg["data-dir"].as<std::string>());

  auto wunit = Unit(Deploy("systemd/rung-worker.service"));
  for (const auto& f : FlagsIn(wunit["ExecStart"]))
    EXPECT_TRUE(worker.count(f)) << "rung-worker.service: " << f;
  EXPECT_THAT(wunit["ExecStart"],
              ::testing::HasSubstr("--work-dir /var/lib/" + wunit["StateDirectory"]));
  EXPECT_EQ(wunit["EnvironmentFile"], "/etc/rung/worker.env");
  auto env = Unit(Deploy("systemd/worker.env"));
  for (const auto& [k, v] : env) {
    EXPECT_TRUE(k == "RUNG_ADDR" || k == "RUNG_TOKEN" || k == "RUNG_CA" || k == "RUNG_CERT" ||
                k == "RUNG_KEY")
        << "worker.env sets " << k << ", which rung-worker does not read";
  }
  EXPECT_EQ(PortOf(env["RUNG_ADDR"]), PortOf(cfg["listen"].as<std::string>()));
  EXPECT_EQ(env["RUNG_CA"].empty(), !cfg["tls-cert"]) << "TLS on one side only";
}

struct Manifests {
  std::map<std::string, YAML::Node> by_kind_name;  // "Service/rungd"
  YAML::Node Get(const std::string& kind, const std::string& name) {
    auto it = by_kind_name.find(kind + "/" + name);
    EXPECT_NE(it, by_kind_name.end()) << kind << "/" << name;
    return it == by_kind_name.end() ? YAML::Node() : it->second;
  }
};

Manifests LoadManifests() {
  Manifests m;
  for (const char* file : {"namespace.yaml", "secret.yaml", "rungd.yaml", "rung-worker.yaml"}) {
    for (const YAML::Node& doc : YAML::LoadAllFromFile(Deploy(std::string("kubernetes/") + file))) {
      m.by_kind_name[doc["kind"].as<std::string>() + "/" +
                     doc["metadata"]["name"].as<std::string>()] = doc;
    }
  }
  return m;
}

// The container's named port's number.
int ContainerPort(const YAML::Node& container, const std::string& name) {
  for (const auto& p : container["ports"]) {
    if (p["name"].as<std::string>() == name) return p["containerPort"].as<int>();
  }
  ADD_FAILURE() << "no container port " << name;
  return 0;
}

// The mount path of volume `name` in `container`.
std::string MountOf(const YAML::Node& container, const std::string& name) {
  for (const auto& v : container["volumeMounts"]) {
    if (v["name"].as<std::string>() == name) return v["mountPath"].as<std::string>();
  }
  ADD_FAILURE() << "no volume mount " << name;
  return "";
}

// Every argument that names a file under a mounted secret names a key of `secret`.
void ExpectSecretFilesExist(const YAML::Node& pod, const YAML::Node& container,
                            const YAML::Node& secret) {
  for (const auto& vol : pod["volumes"]) {
    if (!vol["secret"]) continue;
    EXPECT_EQ(vol["secret"]["secretName"].as<std::string>(),
              secret["metadata"]["name"].as<std::string>());
    const std::string dir = MountOf(container, vol["name"].as<std::string>()) + "/";
    std::set<std::string> files;
    if (vol["secret"]["items"]) {
      for (const auto& item : vol["secret"]["items"]) {
        EXPECT_TRUE(secret["stringData"][item["key"].as<std::string>()])
            << item["key"].as<std::string>();
        files.insert(item["path"].as<std::string>());
      }
    } else {
      for (const auto& kv : secret["stringData"]) files.insert(kv.first.as<std::string>());
    }
    for (const auto& a : container["args"]) {
      const std::string v = ValueOf(a.as<std::string>());
      if (absl::StartsWith(v, dir)) {
        EXPECT_TRUE(files.count(v.substr(dir.size()))) << a.as<std::string>();
      }
    }
  }
}

TEST(DeployTest, KubernetesManifestsTieTogether) {
  const auto rungd_flags = Flags("/server/rungd");
  const auto worker_flags = Flags("/worker/rung-worker");
  Manifests m = LoadManifests();
  const std::string ns = m.Get("Namespace", "rung")["metadata"]["name"].as<std::string>();
  for (const auto& [key, doc] : m.by_kind_name) {
    if (doc["kind"].as<std::string>() != "Namespace") {
      EXPECT_EQ(doc["metadata"]["namespace"].as<std::string>(), ns) << key;
    }
  }
  YAML::Node secret = m.Get("Secret", "rung-secret");
  YAML::Node service = m.Get("Service", "rungd");
  YAML::Node sts = m.Get("StatefulSet", "rungd");
  YAML::Node ds = m.Get("DaemonSet", "rung-worker");

  // rungd: its flags exist; the Service reaches its named ports; data on the claimed volume.
  EXPECT_EQ(sts["spec"]["serviceName"].as<std::string>(),
            service["metadata"]["name"].as<std::string>());
  const YAML::Node labels = sts["spec"]["template"]["metadata"]["labels"];
  for (const auto& kv : service["spec"]["selector"])
    EXPECT_EQ(labels[kv.first.as<std::string>()].as<std::string>(), kv.second.as<std::string>());
  for (const auto& kv : sts["spec"]["selector"]["matchLabels"])
    EXPECT_EQ(labels[kv.first.as<std::string>()].as<std::string>(), kv.second.as<std::string>());
  const YAML::Node pod = sts["spec"]["template"]["spec"];
  const YAML::Node rungd = pod["containers"][0];
  EXPECT_EQ(rungd["command"][0].as<std::string>(), "rungd");
  std::map<std::string, std::string> args;
  for (const auto& a : rungd["args"]) {
    EXPECT_TRUE(rungd_flags.count(FlagOf(a.as<std::string>()))) << a.as<std::string>();
    args[FlagOf(a.as<std::string>())] = ValueOf(a.as<std::string>());
  }
  std::map<std::string, int> service_ports;
  for (const auto& p : service["spec"]["ports"]) {
    const std::string target = p["targetPort"].as<std::string>();
    service_ports[target] = p["port"].as<int>();
    EXPECT_GT(ContainerPort(rungd, target), 0);
  }
  EXPECT_EQ(ContainerPort(rungd, "grpc"), PortOf(args["--listen"]));
  EXPECT_EQ(ContainerPort(rungd, "metrics"), PortOf(args["--metrics-listen"]));
  EXPECT_EQ(ContainerPort(rungd, "web"), PortOf(args["--web-listen"]));
  EXPECT_EQ(rungd["readinessProbe"]["grpc"]["port"].as<int>(), PortOf(args["--listen"]));
  const std::string claim =
      sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"].as<std::string>();
  EXPECT_EQ(MountOf(rungd, claim), args["--data-dir"]);
  ExpectSecretFilesExist(pod, rungd, secret);
  EXPECT_TRUE(args.count("--auth-tokens") && args.count("--tls-cert"))
      << "rungd in a cluster without tokens or TLS";

  // rung-worker: dials the Service by its DNS name and port, with the secret's CA and token,
  // asks for GPUs, and keeps its work folder where it says.
  const YAML::Node wpod = ds["spec"]["template"]["spec"];
  const YAML::Node worker = wpod["containers"][0];
  EXPECT_EQ(worker["command"][0].as<std::string>(), "rung-worker");
  std::map<std::string, std::string> wargs;
  for (const auto& a : worker["args"]) {
    EXPECT_TRUE(worker_flags.count(FlagOf(a.as<std::string>()))) << a.as<std::string>();
    wargs[FlagOf(a.as<std::string>())] = ValueOf(a.as<std::string>());
  }
  const std::string controller = wargs["--controller"];
  EXPECT_EQ(controller.substr(0, controller.rfind(':')),
            absl::StrCat(service["metadata"]["name"].as<std::string>(), ".", ns, ".svc"));
  EXPECT_EQ(PortOf(controller), service_ports["grpc"]);
  EXPECT_GT(worker["resources"]["limits"]["nvidia.com/gpu"].as<int>(), 0);
  EXPECT_EQ(MountOf(worker, "work"), wargs["--work-dir"]);
  ExpectSecretFilesExist(wpod, worker, secret);
  bool token = false;
  for (const auto& e : worker["env"]) {
    if (!e["valueFrom"]["secretKeyRef"]) continue;
    EXPECT_EQ(e["valueFrom"]["secretKeyRef"]["name"].as<std::string>(),
              secret["metadata"]["name"].as<std::string>());
    EXPECT_TRUE(secret["stringData"][e["valueFrom"]["secretKeyRef"]["key"].as<std::string>()]);
    token |= e["name"].as<std::string>() == "RUNG_TOKEN";
  }
  EXPECT_TRUE(token) << "the worker has no token, and rungd requires one";
  // The worker token in the secret is one of the tokens file's, with role worker.
  bool listed = false;
  for (absl::string_view line :
       absl::StrSplit(secret["stringData"]["tokens"].as<std::string>(), '\n')) {
    std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
    listed |= w.size() == 3 && w[0] == secret["stringData"]["worker-token"].as<std::string>() &&
              w[2] == "worker";
  }
  EXPECT_TRUE(listed);
  // The worker's metrics port is declared, so Prometheus's pod discovery can find it.
  EXPECT_EQ(ContainerPort(worker, "metrics"), PortOf(wargs["--metrics-listen"]));
}

TEST(DeployTest, PrometheusScrapesThePortsTheOtherFilesOpen) {
  const YAML::Node prom = YAML::LoadFile(Deploy("prometheus/prometheus.yml"));
  std::map<std::string, std::set<int>> ports;  // job -> target ports
  for (const auto& job : prom["scrape_configs"]) {
    for (const auto& sc : job["static_configs"]) {
      for (const auto& t : sc["targets"])
        ports[job["job_name"].as<std::string>()].insert(PortOf(t.as<std::string>()));
    }
  }
  const YAML::Node cfg = YAML::LoadFile(Deploy("systemd/rungd.yaml"));
  EXPECT_EQ(ports["rungd"], std::set<int>{PortOf(cfg["metrics-listen"].as<std::string>())});
  std::string worker_listen;
  const std::string exec_start = Unit(Deploy("systemd/rung-worker.service"))["ExecStart"];
  for (absl::string_view f : absl::StrSplit(exec_start, ' ')) {
    if (worker_listen == "next") worker_listen = std::string(f);
    if (f == "--metrics-listen") worker_listen = "next";
  }
  EXPECT_EQ(ports["rung-worker"], std::set<int>{PortOf(worker_listen)});
  // The alert rules sit where the config says, and name the same jobs.
  ASSERT_EQ(prom["rule_files"].size(), 1u);
  const std::string rules = Slurp(Deploy("prometheus/" + prom["rule_files"][0].as<std::string>()));
  EXPECT_THAT(rules, ::testing::HasSubstr("up{job=\"rungd\"}"));
  EXPECT_THAT(rules, ::testing::HasSubstr("up{job=\"rung-worker\"}"));
}

TEST(DeployTest, SlurmScriptAndContainerFileAgreeWithThePrograms) {
  const auto worker_flags = Flags("/worker/rung-worker");
  const std::string script = Slurp(Deploy("slurm/rung-workers.sbatch"));
  const size_t at = script.find("exec rung-worker");
  ASSERT_NE(at, std::string::npos);
  for (const auto& f : FlagsIn(script.substr(at)))
    EXPECT_TRUE(worker_flags.count(f)) << "rung-workers.sbatch: " << f;
  EXPECT_EQ(system(("bash -n " + Deploy("slurm/rung-workers.sbatch")).c_str()), 0);

  const std::string containerfile = Slurp(Deploy("Containerfile"));
  EXPECT_THAT(containerfile, ::testing::HasSubstr("--component runtime"));
  EXPECT_THAT(Slurp(SourceDir() + "/CMakeLists.txt"), ::testing::HasSubstr("COMPONENT runtime"));
  EXPECT_THAT(containerfile, ::testing::HasSubstr("EXPOSE 7411 7412 9411"));
  // The image's user is the one the StatefulSet runs as.
  EXPECT_THAT(containerfile, ::testing::HasSubstr("--uid 10001"));
  Manifests m = LoadManifests();
  EXPECT_EQ(
      m.Get("StatefulSet", "rungd")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
          .as<int>(),
      10001);
}

}  // namespace
}  // namespace rung::testing
