output "topic_id" {
  value       = google_pubsub_topic.events.id
  description = "Topic producers publish to."
}

output "push_subscription_name" {
  value       = google_pubsub_subscription.push.name
  description = "The push subscription; its messages' default CloudEvents source is //pubsub.googleapis.com/<its path>."
}

output "dead_letter_subscription_name" {
  value       = google_pubsub_subscription.dead_letter.name
  description = "Where messages past max_delivery_attempts wait for an operator."
}
