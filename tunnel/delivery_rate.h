// Delivery rate estimation (draft-cheng-iccrg-delivery-rate-estimation), the bandwidth input
// of BBR.
//
// Each packet remembers, when sent, how many bytes had been delivered (acknowledged) so far
// and when. When it is acknowledged, the bytes delivered since then divided by the time that
// took gives a rate sample. The interval is the longer of the send interval and the ACK
// interval, so neither a burst of sends nor a burst of ACKs (ACK compression, stretched
// delayed ACKs) can make the path look faster than it is.
//
// Samples taken while the sender had nothing to send are marked app-limited: they measure
// the application, not the path, and BBR uses them only when they raise its estimate.
#pragma once

#include <cstdint>

#include "tunnel/sent_packet.h"
#include "tunnel/time.h"

namespace burrow {

struct RateSample {
    double delivery_rate = 0;  // bytes per second; 0 when no valid sample
    uint64_t delivered = 0;    // bytes delivered over the interval
    Duration interval{};
    Duration rtt{};  // of the most recently sent acked packet; zero when nothing was acked
    uint64_t prior_delivered = 0;  // delivered() when that packet was sent
    bool is_app_limited = false;
    uint64_t newly_acked = 0, newly_lost = 0;  // bytes, in this ACK
};

class DeliveryRateEstimator {
  public:
    // Fills p.delivery. bytes_in_flight is the amount in flight before p (0 starts a new
    // flight: the first packet after an idle period must not measure the idle time).
    void on_packet_sent(SentPacket& p, uint64_t bytes_in_flight, Time now);
    // For each newly acked packet of an ACK. Packets not counted in flight (ACK-only) carry
    // no congestion-controlled data and are skipped.
    void on_packet_acked(const SentPacket& p, Time now);
    // Once per ACK, after the on_packet_acked calls; starts the next sample afresh.
    // prior_delivered and delivered are filled whenever something was acked, even when the
    // interval is too short for a valid rate (then delivery_rate is 0).
    RateSample generate(Time now, uint64_t newly_lost);
    // The sender ran out of data with bytes_in_flight outstanding: samples are app-limited
    // until what is in flight now has been delivered.
    void on_app_limited(uint64_t bytes_in_flight);
    uint64_t delivered() const { return delivered_; }
    bool app_limited() const { return app_limited_until_ != 0; }

  private:
    uint64_t delivered_ = 0;
    Time delivered_time_{};
    Time first_sent_time_{};
    uint64_t app_limited_until_ = 0;      // delivered() at which app-limited ends; 0 = not limited
    Duration min_rtt_ = Duration::max();  // lower bound on a believable interval

    // The sample being built from the current ACK.
    bool has_sample_ = false;
    uint64_t rs_prior_delivered_ = 0;
    Time rs_sent_time_{};
    Duration rs_send_elapsed_{};
    Duration rs_ack_elapsed_{};
    bool rs_app_limited_ = false;
    uint64_t rs_newly_acked_ = 0;
};

}  // namespace burrow
