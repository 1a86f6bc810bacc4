#include "rules/policy.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "util/cat.h"

namespace rollertrace::rules {
namespace {

// Errors carry the path of the field, e.g. "sterilisation_methods.steam_gravity[0].hold_minutes".
struct PolicyError {
  std::string field;
  std::string message;
};

double Number(const YAML::Node& node, const std::string& field) {
  if (!node.IsScalar()) throw PolicyError{field, "must be a number"};
  try {
    return node.as<double>();
  } catch (const YAML::Exception&) {
    throw PolicyError{field, util::Cat("must be a number, got '", node.Scalar(), "'")};
  }
}

// No field of a policy is sensibly larger: the bound keeps every conversion
// to milliseconds or whole numbers defined (an .inf or 1e300 would not be).
constexpr double kLargest = 1e6;

double Positive(const YAML::Node& node, const std::string& field) {
  double v = Number(node, field);
  if (!(v > 0) || !std::isfinite(v) || v > kLargest) {
    throw PolicyError{field, util::Cat("must be a positive number up to ", kLargest, ", got ", node.Scalar())};
  }
  return v;
}

void OnlyKeys(const YAML::Node& map, const std::string& field, const std::set<std::string>& allowed) {
  if (!map.IsMap()) throw PolicyError{field.empty() ? "(top level)" : field, "must be a mapping"};
  for (const auto& kv : map) {
    const std::string key = kv.first.as<std::string>();
    if (!allowed.count(key)) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      throw PolicyError{field.empty() ? key : field + "." + key, util::Cat("unknown field; expected one of ", list)};
    }
  }
}

rollertrace::v1::Indication IndicationNamed(const std::string& name, const std::string& field) {
  std::string upper = "INDICATION_";
  for (char c : name) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  rollertrace::v1::Indication i;
  if (!rollertrace::v1::Indication_Parse(upper, &i) || i == rollertrace::v1::INDICATION_UNSPECIFIED) {
    throw PolicyError{field, "unknown indication; expected rejuvenation, acne, pigmentation, hair_loss, scar or "
                             "stretch_marks"};
  }
  return i;
}

Policy Parse(const YAML::Node& root) {
  Policy p;
  if (root.IsNull()) return p;
  OnlyKeys(root, "",
           {"session_limit", "session_limit_by_model", "sterile_shelf_life_days", "min_session_interval_days",
            "course_gap_days", "worn_fraction", "worn_soon_fraction", "anaesthesia_minutes", "max_clock_skew_minutes",
            "max_sequence_jump", "sterilisation_methods", "needle_for_indication"});
  auto whole = [](const YAML::Node& n, const std::string& field) {
    double v = Positive(n, field);
    if (v != static_cast<uint32_t>(v)) throw PolicyError{field, util::Cat("must be a whole number, got ", v)};
    return static_cast<uint32_t>(v);
  };
  if (root["session_limit"]) p.session_limit = whole(root["session_limit"], "session_limit");
  if (const auto& m = root["session_limit_by_model"]) {
    if (!m.IsMap()) throw PolicyError{"session_limit_by_model", "must be a mapping of model to session limit"};
    for (const auto& kv : m) {
      const std::string model = kv.first.as<std::string>();
      p.session_limit_by_model[model] = whole(kv.second, "session_limit_by_model." + model);
    }
  }
  auto days = [&](const char* key, int64_t* out) {
    if (root[key]) *out = static_cast<int64_t>(Positive(root[key], key) * kDayMs);
  };
  days("sterile_shelf_life_days", &p.sterile_shelf_life_ms);
  days("min_session_interval_days", &p.min_session_interval_ms);
  days("course_gap_days", &p.course_gap_ms);
  if (root["worn_fraction"]) p.worn_fraction = Positive(root["worn_fraction"], "worn_fraction");
  if (root["worn_soon_fraction"]) p.worn_soon_fraction = Positive(root["worn_soon_fraction"], "worn_soon_fraction");
  if (p.worn_soon_fraction >= p.worn_fraction) {
    throw PolicyError{"worn_soon_fraction", util::Cat("must be below worn_fraction (", p.worn_fraction, "), got ",
                                                      p.worn_soon_fraction)};
  }
  if (const auto& a = root["anaesthesia_minutes"]) {
    OnlyKeys(a, "anaesthesia_minutes", {"min", "max"});
    if (a["min"]) p.anaesthesia_min_ms = static_cast<int64_t>(Positive(a["min"], "anaesthesia_minutes.min") * kMinuteMs);
    if (a["max"]) p.anaesthesia_max_ms = static_cast<int64_t>(Positive(a["max"], "anaesthesia_minutes.max") * kMinuteMs);
    if (p.anaesthesia_min_ms >= p.anaesthesia_max_ms) {
      throw PolicyError{"anaesthesia_minutes", "min must be below max"};
    }
  }
  if (root["max_clock_skew_minutes"]) {
    p.max_clock_skew_ms = static_cast<int64_t>(Positive(root["max_clock_skew_minutes"], "max_clock_skew_minutes") *
                                               kMinuteMs);
  }
  if (root["max_sequence_jump"]) p.max_sequence_jump = whole(root["max_sequence_jump"], "max_sequence_jump");
  if (const auto& methods = root["sterilisation_methods"]) {
    if (!methods.IsMap()) throw PolicyError{"sterilisation_methods", "must be a mapping of method to minimums"};
    p.methods.clear();
    for (const auto& kv : methods) {
      const std::string name = kv.first.as<std::string>();
      const std::string field = "sterilisation_methods." + name;
      if (!kv.second.IsSequence() || kv.second.size() == 0) {
        throw PolicyError{field, "must be a list of {temperature_c, hold_minutes}"};
      }
      for (size_t i = 0; i < kv.second.size(); ++i) {
        const std::string f = util::Cat(field, "[", i, "]");
        OnlyKeys(kv.second[i], f, {"temperature_c", "hold_minutes"});
        if (!kv.second[i]["temperature_c"] || !kv.second[i]["hold_minutes"]) {
          throw PolicyError{f, "needs temperature_c and hold_minutes"};
        }
        p.methods[name].push_back(
            {Positive(kv.second[i]["temperature_c"], f + ".temperature_c"),
             static_cast<uint32_t>(Positive(kv.second[i]["hold_minutes"], f + ".hold_minutes") * 60)});
      }
    }
  }
  if (const auto& table = root["needle_for_indication"]) {
    if (!table.IsMap()) throw PolicyError{"needle_for_indication", "must be a mapping of indication to range"};
    p.needle_for_indication.clear();
    for (const auto& kv : table) {
      const std::string name = kv.first.as<std::string>();
      const std::string field = "needle_for_indication." + name;
      OnlyKeys(kv.second, field, {"min_mm", "max_mm"});
      NeedleRange r{Positive(kv.second["min_mm"], field + ".min_mm"), Positive(kv.second["max_mm"], field + ".max_mm")};
      if (r.min_mm > r.max_mm) throw PolicyError{field, "min_mm must not exceed max_mm"};
      p.needle_for_indication[IndicationNamed(name, field)] = r;
    }
  }
  return p;
}

}  // namespace

absl::StatusOr<Policy> ParsePolicy(const std::string& yaml) {
  try {
    return Parse(YAML::Load(yaml));
  } catch (const PolicyError& e) {
    return absl::InvalidArgumentError(util::Cat("policy field ", e.field, ": ", e.message));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(util::Cat("policy is not valid YAML: ", e.what()));
  }
}

absl::StatusOr<Policy> LoadPolicyFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(util::Cat("cannot read policy file ", path));
  std::stringstream s;
  s << in.rdbuf();
  absl::StatusOr<Policy> p = ParsePolicy(s.str());
  if (!p.ok()) return absl::InvalidArgumentError(util::Cat(path, ": ", p.status().message()));
  return p;
}

namespace {

std::string Num(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(v);
}

std::string Quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

std::string IndicationName(rollertrace::v1::Indication i) {
  std::string name = rollertrace::v1::Indication_Name(i).substr(sizeof("INDICATION_") - 1);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace

std::string FormatPolicy(const Policy& p) {
  const double day = static_cast<double>(kDayMs), minute = static_cast<double>(kMinuteMs);
  std::ostringstream y;
  y << "session_limit: " << p.session_limit << "\n";
  y << "session_limit_by_model: {";
  const char* sep = "";
  for (const auto& [model, limit] : p.session_limit_by_model) {
    y << sep << Quoted(model) << ": " << limit;
    sep = ", ";
  }
  y << "}\n";
  y << "sterile_shelf_life_days: " << Num(static_cast<double>(p.sterile_shelf_life_ms) / day) << "\n";
  y << "min_session_interval_days: " << Num(static_cast<double>(p.min_session_interval_ms) / day) << "\n";
  y << "course_gap_days: " << Num(static_cast<double>(p.course_gap_ms) / day) << "\n";
  y << "worn_fraction: " << Num(p.worn_fraction) << "\n";
  y << "worn_soon_fraction: " << Num(p.worn_soon_fraction) << "\n";
  y << "anaesthesia_minutes: {min: " << Num(static_cast<double>(p.anaesthesia_min_ms) / minute)
    << ", max: " << Num(static_cast<double>(p.anaesthesia_max_ms) / minute) << "}\n";
  y << "max_clock_skew_minutes: " << Num(static_cast<double>(p.max_clock_skew_ms) / minute) << "\n";
  y << "max_sequence_jump: " << p.max_sequence_jump << "\n";
  y << "sterilisation_methods:" << (p.methods.empty() ? " {}" : "") << "\n";
  for (const auto& [method, minimums] : p.methods) {
    y << "  " << Quoted(method) << ":\n";
    for (const auto& m : minimums) {
      y << "    - {temperature_c: " << Num(m.temperature_c) << ", hold_minutes: " << Num(m.hold_seconds / 60.0) << "}\n";
    }
  }
  y << "needle_for_indication: {";
  sep = "";
  for (const auto& [indication, range] : p.needle_for_indication) {
    y << sep << IndicationName(indication) << ": {min_mm: " << Num(range.min_mm) << ", max_mm: " << Num(range.max_mm)
      << "}";
    sep = ", ";
  }
  y << "}\n";
  return y.str();
}

}  // namespace rollertrace::rules
