# A topic, its push subscription to Sluice (OIDC-signed, retried with backoff) and a
# dead-letter topic with a pull subscription an operator drains.
data "google_project" "this" {
  project_id = var.project_id
}

locals {
  # The Pub/Sub service agent forwards to the dead-letter topic and acks the source.
  pubsub_agent = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_topic" "events" {
  project      = var.project_id
  name         = var.name
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_topic" "dead_letter" {
  project      = var.project_id
  name         = "${var.name}-dead-letter"
  kms_key_name = var.kms_key_name
  labels       = var.labels
}

resource "google_pubsub_subscription" "push" {
  project              = var.project_id
  name                 = "${var.name}-sluice-push"
  topic                = google_pubsub_topic.events.id
  ack_deadline_seconds = 30
  labels               = var.labels

  push_config {
    push_endpoint = var.push_endpoint
    oidc_token {
      service_account_email = var.push_service_account_email
      audience              = var.push_audience
    }
  }

  retry_policy {
    minimum_backoff = var.minimum_backoff
    maximum_backoff = var.maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.max_delivery_attempts
  }
}

resource "google_pubsub_subscription" "dead_letter" {
  project                    = var.project_id
  name                       = "${var.name}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
  labels                     = var.labels
}

resource "google_pubsub_topic_iam_member" "agent_publishes_dead_letters" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "agent_acks_forwarded" {
  project      = var.project_id
  subscription = google_pubsub_subscription.push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The service agent mints the push service account's OIDC tokens.
resource "google_service_account_iam_member" "agent_signs_push_tokens" {
  service_account_id = "projects/${var.project_id}/serviceAccounts/${var.push_service_account_email}"
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
