variable "project_id" {
  type        = string
  description = "GCP project that owns the topics and subscriptions."
}

variable "name" {
  type        = string
  description = "Base name: the topic, its push subscription and the dead-letter topic derive from it."
}

variable "push_endpoint" {
  type        = string
  description = "HTTPS URL of Sluice's push endpoint (SLUICE_PUBSUB_PUSH_PATH), e.g. https://sluice.example/pubsub/push."
}

variable "push_audience" {
  type        = string
  description = "Audience of the OIDC token Pub/Sub sends; Sluice checks it (SLUICE_PUBSUB_OIDC_AUDIENCE)."
}

variable "push_service_account_email" {
  type        = string
  description = "Service account whose OIDC token signs each push (SLUICE_PUBSUB_OIDC_EMAILS)."
}

variable "max_delivery_attempts" {
  type        = number
  default     = 10
  description = "Deliveries before a message goes to the dead-letter topic (5 to 100)."
}

variable "minimum_backoff" {
  type        = string
  default     = "1s"
  description = "Retry policy: first redelivery delay."
}

variable "maximum_backoff" {
  type        = string
  default     = "300s"
  description = "Retry policy: longest redelivery delay."
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key that encrypts the topics' messages."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels on every resource."
}
