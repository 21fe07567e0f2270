// Which way a link punches through the two NATs, and the birthday side's schedule
// (docs/architecture.md §5 step 3). Pure: the PeerLink (tunnel/peer_link.h) asks and follows.
//
//   our NAT                peer's NAT              technique
//   any                    any, no reflexive addr  plain: probes to the peer's candidates
//   endpoint-independent   per-destination         spray: plain, plus rounds of kSprayPorts
//                                                  probes to random ports of the peer's
//                                                  public address (PathManager::start_spray)
//   per-destination        endpoint-independent    birthday: plain, plus kBirthdaySockets
//                                                  sockets of ours, each opening a mapping
//                                                  towards the peer's reflexive address
//
//   Port prediction (issue 16) where a per-destination NAT's allocation is predictable
//   (tunnel/port_prediction.h: sequential, or a per-subscriber block):
//   endpoint-independent   per-destination,        predicted: plain, plus rounds of probes to
//                          predictable             the peer's predicted window (every port a
//                                                  new mapping of its may get), not random ones
//   per-destination,       endpoint-independent    predicted: birthday's sockets as well; the
//   predictable                                    main socket's plain probe to the peer's
//                                                  reflexive address and each socket's opening
//                                                  probe take the next ports, inside the window
//                                                  the peer probes. The sockets stay because the
//                                                  peer may have met us before our allocation
//                                                  was known, and sprays random ports then.
//   per-destination,       per-destination,        predicted (lockstep): plain, plus rounds of
//   sequential             sequential              kLockstepProbes probes from our one socket,
//                                                  the initiator's to the peer's next ports one
//                                                  by one, the responder's to every other one
//                                                  (tunnel/path_manager.h start_lockstep)
//   otherwise, the peer offers
//   a gateway-mapped address                       mapped: plain probes, which reach the
//                                                  mapping whatever our NAT does (UPnP IGD /
//                                                  NAT-PMP forward the port for any sender)
//   otherwise                                      plain (both symmetric: the relay stays)
//
// A mapped address does not replace spray or birthday where they apply: the gateway's
// "external" address may itself sit behind another NAT (double NAT), and then only the
// techniques that need no mapping get through. Plain probes go to the mapped address anyway.
//
// The spray and the birthday sockets meet when one of the peer's probes hits one of our open
// mappings: with 256 mappings among ~64500 ports, one round of 1000 probes finds one with
// probability 98% (tunnel/path_manager.h).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "tunnel/nat_mapping.h"
#include "tunnel/path_manager.h"
#include "tunnel/port_prediction.h"
#include "tunnel/time.h"

namespace burrow {

enum class PunchTechnique : uint8_t { kPlain, kSpray, kBirthday, kMapped, kPredicted };
const char* to_string(PunchTechnique t);

PunchTechnique choose_technique(NatMapping ours, NatMapping theirs, bool peer_reflexive_known,
                                bool peer_mapped_known = false,
                                const PortAllocation& our_allocation = {},
                                const PortAllocation& their_allocation = {});

// The birthday side sends one opening probe from each socket per round: the mapping must exist
// when the peer's spray arrives and stay open while it sprays.
inline constexpr Duration kBirthdayRoundInterval = std::chrono::seconds(1);
// Rounds until the sockets are given up: longer than the peer's whole spray
// (kSprayRounds x kSprayInterval = 15 s).
inline constexpr int kBirthdayOpeningRounds = 16;
static_assert(kBirthdayOpeningRounds * kBirthdayRoundInterval >= kSprayRounds * kSprayInterval);
// After going direct, the birthday sockets that heard the peer stay open this long for the peer
// to show by its data which one it kept (it pings as it goes direct; should that be lost, its
// keepalive PINGs or data come later); then all but the route to it close. Its challenges do not
// count: it probes every port of ours it knows (issue 19).
inline constexpr Duration kBirthdayChoiceWait = std::chrono::seconds(3);
static_assert(kBirthdayChoiceWait > 2 * kDirectKeepalive);
// A birthday socket carries probes only, unless it becomes the path: a small buffer each keeps
// 256 of them cheap.
inline constexpr int kBirthdaySocketBuffer = 64 * 1024;

}  // namespace burrow
