// Candidate ranking: hard constraints, then score, with an explanation for each.
#include "services/referrals/routing.h"

#include <gtest/gtest.h>

namespace safeharbor::referrals {
namespace {

Option Make(const std::string& id, int64_t meters, bool specialized, const std::string& county,
            std::vector<std::string> langs = {"en"}) {
  Option o;
  o.provider_organization_id = id;
  o.service_id = id + "-svc";
  o.category = directory::v1::SERVICE_CATEGORY_CSEC_ADVOCACY;
  o.csec_specialized = specialized;
  o.languages = std::move(langs);
  o.county_fips = county;
  o.distance_meters = meters;
  return o;
}

std::vector<std::string> Ids(const std::vector<v1::Candidate>& c) {
  std::vector<std::string> out;
  for (const auto& x : c) out.push_back(x.provider_organization_id());
  return out;
}

TEST(Routing, SpecializedFirstThenLanguageThenDistance) {
  v1::YouthProfile youth;
  youth.add_languages("es");
  v1::SafetyFlags safety;
  RoutingRequest req{&youth, &safety, "53033"};
  auto ranked = Rank(req, {Make("near-general", 2000, false, "53033"),
                           Make("far-specialized", 40000, true, "53033"),
                           Make("mid-specialized-es", 20000, true, "53033", {"en", "es"})});
  EXPECT_EQ(Ids(ranked),
            (std::vector<std::string>{"mid-specialized-es", "far-specialized", "near-general"}));
  EXPECT_EQ(ranked[0].rank(), 1);
  EXPECT_NE(ranked[0].explanation().find("csec-specialized"), std::string::npos);
  EXPECT_NE(ranked[0].explanation().find("speaks es"), std::string::npos);
  EXPECT_NE(ranked[0].explanation().find("20.0 km"), std::string::npos);
}

TEST(Routing, NeverASecureOrDetentionPlacement) {
  v1::YouthProfile youth;
  RoutingRequest req{&youth, nullptr, "53033"};
  Option secure = Make("secure", 100, true, "53033");
  secure.category = directory::v1::SERVICE_CATEGORY_SECURE_CRISIS_RESIDENTIAL_CENTER;
  Option detention = Make("detention", 100, true, "53033");
  detention.routable = false;
  auto ranked = Rank(req, {secure, detention, Make("shelter", 50000, false, "53033")});
  EXPECT_EQ(Ids(ranked), std::vector<std::string>{"shelter"});
}

TEST(Routing, AKnownExploiterKeepsTheYouthOutOfTheCounty) {
  v1::YouthProfile youth;
  v1::SafetyFlags safety;
  safety.set_exploiter_known_in_area(true);
  RoutingRequest req{&youth, &safety, "53033"};
  auto ranked = Rank(
      req, {Make("in-county", 1000, true, "53033"), Make("next-county", 60000, true, "53061")});
  EXPECT_EQ(Ids(ranked), std::vector<std::string>{"next-county"});
  EXPECT_NE(ranked[0].explanation().find("outside the county"), std::string::npos);
}

TEST(Routing, LoadAndEmergencyDistanceShiftTheOrderDeterministically) {
  v1::YouthProfile youth;
  RoutingRequest routine{&youth, nullptr, "53033", v1::URGENCY_ROUTINE};
  Option busy = Make("busy", 5000, true, "53033");
  busy.active_referrals = 4;
  Option idle = Make("idle", 100000, true, "53033");
  // Routine: 4 active referrals (-200) weigh more than 95 km (-95).
  EXPECT_EQ(Ids(Rank(routine, {busy, idle})), (std::vector<std::string>{"idle", "busy"}));
  // Emergency: distance counts three times over (-300 vs -15 - 200).
  RoutingRequest emergency{&youth, nullptr, "53033", v1::URGENCY_EMERGENCY};
  EXPECT_EQ(Ids(Rank(emergency, {busy, idle})), (std::vector<std::string>{"busy", "idle"}));
  // Equal scores: nearer first, then by id.
  EXPECT_EQ(Ids(Rank(routine, {Make("b", 3000, false, "53033"), Make("a", 3000, false, "53033")})),
            (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(OffersAtOnce(true), 1);
  EXPECT_EQ(OffersAtOnce(false), 3);
}

}  // namespace
}  // namespace safeharbor::referrals
