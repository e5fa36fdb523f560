// What a flow log covers (model::flowLogInstances): every instance of its
// VPC or subnet, or its one instance, in model order; nothing of another VPC.
#include <doctest/doctest.h>

#include "support/test_config.h"

using namespace vpcfw;

TEST_CASE("flowLogInstances: a VPC's, a subnet's and an instance's flow log cover their instances") {
  auto m = test::loadOk(R"(
vpcs: [{name: a, cidr: 10.0.0.0/16}, {name: b, cidr: 10.1.0.0/16}]
subnets:
  - {name: a1, vpc: a, cidr: 10.0.1.0/24}
  - {name: a2, vpc: a, cidr: 10.0.2.0/24}
  - {name: b1, vpc: b, cidr: 10.1.1.0/24}
instances:
  - {name: x, subnet: a2, private_ip: 10.0.2.10}
  - {name: y, subnet: b1, private_ip: 10.1.1.10}
  - {name: z, subnet: a1, private_ip: 10.0.1.10}
  - {name: w, subnet: a2, private_ip: 10.0.2.11}
flow_logs:
  - {name: vpc-a, vpc: a, destination: stdout}
  - {name: sub-a2, subnet: a2, destination: stdout}
  - {name: inst-y, instance: y, destination: stdout}
  - {name: vpc-b, vpc: b, destination: stdout}
)");
  REQUIRE(m.flowLogs.size() == 4);
  using V = std::vector<std::size_t>;
  CHECK(model::flowLogInstances(m, m.flowLogs[0]) == V{0, 2, 3});
  CHECK(model::flowLogInstances(m, m.flowLogs[1]) == V{0, 3});
  CHECK(model::flowLogInstances(m, m.flowLogs[2]) == V{1});
  CHECK(model::flowLogInstances(m, m.flowLogs[3]) == V{1});
}
