variable "project_id" {
  type        = string
  description = "GCP project of this environment."
}

variable "region" {
  type        = string
  default     = "europe-west1"
  description = "Region of everything but the read replica."
}

variable "replica_region" {
  type        = string
  default     = "europe-west4"
  description = "Region of the Cloud SQL read replica."
}

variable "target" {
  type        = string
  default     = "gke"
  description = "gke or cloud_run."
}

variable "cloud_run_service" {
  type        = string
  default     = ""
  description = "Cloud Run service name when target is cloud_run."
}

variable "network_id" {
  type        = string
  description = "VPC (with private services access) for Cloud SQL's private IP."
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key for Pub/Sub, Cloud SQL and Secret Manager."
}

variable "public_url" {
  type        = string
  description = "Sluice's public HTTPS base URL; also the push tokens' audience."
}
