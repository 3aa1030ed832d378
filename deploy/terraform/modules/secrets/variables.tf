variable "project_id" {
  type        = string
  description = "GCP project of the secrets."
}

variable "prefix" {
  type        = string
  description = "Prefix of the secret ids, e.g. sluice-staging."
}

variable "kms_key_name" {
  type        = string
  description = "Cloud KMS key that encrypts the secrets (customer-managed)."
}

variable "replica_location" {
  type        = string
  description = "Region the secrets are replicated to."
}

variable "accessor_members" {
  type        = list(string)
  description = "Principals that read the secrets at run time (the app's service account)."
}

variable "labels" {
  type        = map(string)
  default     = {}
  description = "Labels on the secrets."
}
