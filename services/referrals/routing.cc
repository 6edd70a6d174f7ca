#include "services/referrals/routing.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace safeharbor::referrals {

int OffersAtOnce(bool placement) { return placement ? 1 : 3; }

std::vector<v1::Candidate> Rank(const RoutingRequest& req, const std::vector<Option>& options) {
  struct Scored {
    const Option* option;
    int32_t score;
    std::string why;
  };
  std::vector<Scored> scored;
  const bool avoid_home_county = req.safety != nullptr && req.safety->exploiter_known_in_area();
  // Emergencies weigh distance more: the youth is waiting at the roadside.
  const int64_t per_km = req.urgency == v1::URGENCY_EMERGENCY ? 3 : 1;
  for (const Option& o : options) {
    if (!o.routable ||
        o.category == directory::v1::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER) {
      continue;  // Never a locked placement.
    }
    if (avoid_home_county && o.county_fips == req.county_fips) continue;
    if (req.open_24_7_only && !o.open_24_7) continue;  // An advocate now, at any hour.
    std::vector<std::string> why;
    int64_t score = 0;
    if (o.csec_specialized) {
      score += 1000;
      why.push_back("csec-specialized");
    }
    if (req.youth != nullptr) {
      for (const auto& lang : req.youth->languages()) {
        if (lang == "en") continue;  // Every service speaks English; others are the match.
        if (std::find(o.languages.begin(), o.languages.end(), lang) != o.languages.end()) {
          score += 300;
          why.push_back(absl::StrCat("speaks ", lang));
          break;
        }
      }
    }
    const int64_t km = o.distance_meters / 1000;
    score -= std::min<int64_t>(km * per_km, 900);
    why.push_back(absl::StrFormat("%.1f km", static_cast<double>(o.distance_meters) / 1000.0));
    if (o.active_referrals > 0) {
      score -= 50 * std::min(o.active_referrals, 10);
      why.push_back(absl::StrCat(o.active_referrals, " active referrals"));
    }
    if (avoid_home_county) why.push_back("outside the county where the exploiter is known");
    if (req.open_24_7_only) why.push_back("open 24/7 (advocate response target)");
    scored.push_back({&o, static_cast<int32_t>(score), absl::StrJoin(why, "; ")});
  }
  std::sort(scored.begin(), scored.end(), [](const Scored& a, const Scored& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.option->distance_meters != b.option->distance_meters) {
      return a.option->distance_meters < b.option->distance_meters;
    }
    return std::tie(a.option->provider_organization_id, a.option->service_id,
                    a.option->facility_id) < std::tie(b.option->provider_organization_id,
                                                      b.option->service_id, b.option->facility_id);
  });
  std::vector<v1::Candidate> out;
  for (size_t i = 0; i < scored.size(); ++i) {
    v1::Candidate c;
    c.set_provider_organization_id(scored[i].option->provider_organization_id);
    c.set_service_id(scored[i].option->service_id);
    c.set_facility_id(scored[i].option->facility_id);
    c.set_bed_type(scored[i].option->bed_type);
    c.set_category(scored[i].option->category);
    c.set_rank(static_cast<int32_t>(i + 1));
    c.set_distance_meters(scored[i].option->distance_meters);
    c.set_score(scored[i].score);
    c.set_explanation(scored[i].why);
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace safeharbor::referrals
